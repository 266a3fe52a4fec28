"""The notify service's Alembic history, driven from code (`notify migrate`, the tests)."""

from __future__ import annotations

from duewise_service import migrations

SCRIPT_LOCATION = "notify:migrations"


def upgrade(database_url: str, revision: str = "head") -> None:
    """Migrate the database to `revision`. Blocking: call it from a thread inside a loop."""
    migrations.upgrade(SCRIPT_LOCATION, database_url, revision)


def autogenerate(database_url: str, message: str) -> None:
    """Write a new revision from the difference between the models and the database."""
    migrations.autogenerate(SCRIPT_LOCATION, database_url, message)
