"""Invoice service tests: a fresh database per session on the real PostgreSQL, migrated with
the same code as `invoice migrate`; every table emptied between tests."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator

import httpx
import pytest
from duewise_dev.postgres import scratch_database
from fastapi import FastAPI
from invoice.config import Settings
from invoice.main import create_app
from invoice.migrations import upgrade
from invoice.models import SQLModel
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

ADMIN_TOKEN = "test-admin-" + secrets.token_hex(16)


@pytest.fixture(scope="session")
async def invoice_db_url(pg_server_url: str) -> AsyncIterator[str]:
    """A new database on the test server, migrated to head; dropped at the end."""
    async with scratch_database(pg_server_url, "duewise_invoice_test", upgrade) as url:
        yield url


@pytest.fixture(scope="session")
async def app(invoice_db_url: str, kafka_bootstrap: str) -> AsyncIterator[FastAPI]:
    """The app, started (lifespan run), pointed at the test database."""
    settings = Settings(
        database_url=invoice_db_url,
        kafka_bootstrap_servers=kafka_bootstrap,
        admin_token=ADMIN_TOKEN,
    )
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture(scope="session")
def engine(app: FastAPI) -> AsyncEngine:
    e: AsyncEngine = app.state.engine
    return e


@pytest.fixture(autouse=True)
async def _clean(request: pytest.FixtureRequest) -> AsyncIterator[None]:
    """Empty every table (keeping the admin token) before each test that uses the app."""
    if "app" not in request.fixturenames:
        yield
        return
    engine: AsyncEngine = request.getfixturevalue("engine")
    tables = [t.name for t in SQLModel.metadata.sorted_tables if t.name != "api_token"]
    async with engine.begin() as conn:
        await conn.execute(text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))
        await conn.execute(text("DELETE FROM api_token WHERE id <> 'tok_env_admin'"))
    yield


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client on the app, authenticated as admin."""
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://invoice.test",
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
    ) as c:
        yield c


@pytest.fixture
async def anon(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client on the app without credentials."""
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://invoice.test"
    ) as c:
        yield c
