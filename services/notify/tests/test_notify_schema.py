"""The migrations build exactly the tables the models describe (nothing to autogenerate)."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from notify.models import metadata
from sqlalchemy.ext.asyncio import AsyncEngine


async def test_the_migrated_database_matches_the_models(notify_engine: AsyncEngine) -> None:
    async with notify_engine.connect() as conn:
        diff = await conn.run_sync(
            lambda sync: compare_metadata(MigrationContext.configure(sync), metadata)
        )
    assert diff == []
