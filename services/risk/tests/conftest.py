"""Risk service tests: a fresh, migrated database per session on the real PostgreSQL, every
table emptied between the tests that use it."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator

import httpx
import pytest
from duewise_dev.postgres import scratch_database
from fastapi import FastAPI
from risk.config import Settings
from risk.main import create_app
from risk.migrations import upgrade
from risk.models import metadata
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

RISK_ADMIN_TOKEN = "test-admin-" + secrets.token_hex(16)


@pytest.fixture(scope="session")
async def risk_db_url(pg_server_url: str) -> AsyncIterator[str]:
    async with scratch_database(pg_server_url, "duewise_risk_test", upgrade) as url:
        yield url


@pytest.fixture(scope="session")
async def risk_app(risk_db_url: str) -> AsyncIterator[FastAPI]:
    settings = Settings(database_url=risk_db_url, admin_token=RISK_ADMIN_TOKEN)
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture(scope="session")
def risk_engine(risk_app: FastAPI) -> AsyncEngine:
    e: AsyncEngine = risk_app.state.engine
    return e


@pytest.fixture
def maker(risk_app: FastAPI) -> async_sessionmaker[AsyncSession]:
    m: async_sessionmaker[AsyncSession] = risk_app.state.sessionmaker
    return m


@pytest.fixture(autouse=True)
async def _clean(request: pytest.FixtureRequest) -> AsyncIterator[None]:
    if "risk_app" not in request.fixturenames:
        yield
        return
    engine: AsyncEngine = request.getfixturevalue("risk_engine")
    tables = [t.name for t in metadata.sorted_tables if t.name != "api_token"]
    async with engine.begin() as conn:
        await conn.execute(text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))
    yield


@pytest.fixture
async def client(risk_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=risk_app),
        base_url="http://risk.test",
        headers={"Authorization": f"Bearer {RISK_ADMIN_TOKEN}"},
    ) as c:
        yield c
