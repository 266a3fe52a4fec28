"""Dunning service tests: a fresh, migrated database per session on the real PostgreSQL; every
table emptied between tests; the settable clock frozen per test instead of sleeping."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from duewise_dev.postgres import scratch_database
from dunning.clock import clock
from dunning.config import Settings
from dunning.main import create_app
from dunning.migrations import upgrade
from dunning.models import metadata
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

DUNNING_ADMIN_TOKEN = "test-admin-" + secrets.token_hex(16)


@pytest.fixture(scope="session")
async def dunning_db_url(pg_server_url: str) -> AsyncIterator[str]:
    async with scratch_database(pg_server_url, "duewise_dunning_test", upgrade) as url:
        yield url


@pytest.fixture(scope="session")
async def dunning_app(dunning_db_url: str) -> AsyncIterator[FastAPI]:
    settings = Settings(database_url=dunning_db_url, admin_token=DUNNING_ADMIN_TOKEN)
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture(scope="session")
def dunning_engine(dunning_app: FastAPI) -> AsyncEngine:
    e: AsyncEngine = dunning_app.state.engine
    return e


@pytest.fixture
def maker(dunning_app: FastAPI) -> async_sessionmaker[AsyncSession]:
    m: async_sessionmaker[AsyncSession] = dunning_app.state.sessionmaker
    return m


@pytest.fixture(autouse=True)
def _frozen_clock() -> Iterator[None]:
    yield
    clock.reset()


@pytest.fixture(autouse=True)
async def _clean(request: pytest.FixtureRequest) -> AsyncIterator[None]:
    if "dunning_app" not in request.fixturenames:
        yield
        return
    engine: AsyncEngine = request.getfixturevalue("dunning_engine")
    tables = [t.name for t in metadata.sorted_tables if t.name != "api_token"]
    async with engine.begin() as conn:
        await conn.execute(text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))
    yield


@pytest.fixture
async def dclient(dunning_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=dunning_app),
        base_url="http://dunning.test",
        headers={"Authorization": f"Bearer {DUNNING_ADMIN_TOKEN}"},
    ) as c:
        yield c
