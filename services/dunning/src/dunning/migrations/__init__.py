"""The dunning service's Alembic history, driven from code (`dunning migrate`, the tests)."""

from __future__ import annotations

from alembic import command
from alembic.config import Config

from dunning.config import Settings

SCRIPT_LOCATION = "dunning:migrations"


def alembic_config(database_url: str) -> Config:
    """An Alembic config for this service's history against `database_url` (any postgres scheme)."""
    cfg = Config()
    cfg.set_main_option("script_location", SCRIPT_LOCATION)
    # Alembic's config is interpolated: a % in a password must be doubled.
    url = Settings(database_url=database_url).sqlalchemy_url
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade(database_url: str, revision: str = "head") -> None:
    """Migrate the database to `revision`. Blocking: call it from a thread inside a loop."""
    command.upgrade(alembic_config(database_url), revision)


def autogenerate(database_url: str, message: str) -> None:
    """Write a new revision from the difference between the models and the database."""
    command.revision(alembic_config(database_url), message=message, autogenerate=True)
