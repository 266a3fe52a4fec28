"""Each service's own Alembic history, driven from code (`<service> migrate`, the tests).

A service keeps its revisions in `<service>/migrations/versions/`; its `env.py` is one call to
`run_env`, and its `migrate` command one call to `upgrade`.
"""

from __future__ import annotations

import asyncio

from alembic import command, context
from alembic.config import Config
from sqlalchemy import MetaData, pool, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import async_engine_from_config

from duewise_service.urls import sqlalchemy_url


def alembic_config(script_location: str, database_url: str) -> Config:
    """An Alembic config for the history at `script_location` (e.g. "invoice:migrations")."""
    cfg = Config()
    cfg.set_main_option("script_location", script_location)
    # Alembic's config is interpolated: a % in a password must be doubled.
    cfg.set_main_option("sqlalchemy.url", sqlalchemy_url(database_url).replace("%", "%%"))
    return cfg


def upgrade(script_location: str, database_url: str, revision: str = "head") -> None:
    """Migrate to `revision`. Blocking (Alembic runs its own loop): call it from a thread."""
    command.upgrade(alembic_config(script_location, database_url), revision)


def autogenerate(script_location: str, database_url: str, message: str) -> None:
    """Write a new revision from the difference between the models and the database."""
    command.revision(
        alembic_config(script_location, database_url), message=message, autogenerate=True
    )


def run_env(metadata: MetaData, *, lock_key: int) -> None:
    """The body of a service's `env.py`: async (asyncpg), per the Alembic asyncio cookbook.

    Online runs take a transaction-level advisory lock first, so several replicas starting
    at once migrate one after the other instead of racing.
    """
    config = context.config

    def configure_and_run(connection: Connection) -> None:
        context.configure(connection=connection, target_metadata=metadata, compare_type=True)
        with context.begin_transaction():
            connection.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": lock_key})
            context.run_migrations()

    async def online() -> None:
        engine = async_engine_from_config(
            config.get_section(config.config_ini_section, {}),
            prefix="sqlalchemy.",
            poolclass=pool.NullPool,
        )
        async with engine.connect() as connection:
            await connection.run_sync(configure_and_run)
        await engine.dispose()

    if context.is_offline_mode():
        context.configure(
            url=config.get_main_option("sqlalchemy.url"),
            target_metadata=metadata,
            literal_binds=True,
            dialect_opts={"paramstyle": "named"},
            compare_type=True,
        )
        with context.begin_transaction():
            context.run_migrations()
    else:
        asyncio.run(online())
