"""Notify service tests: a fresh, migrated database per session on the real PostgreSQL, a
real SMTP server (the devstack's aiosmtpd catcher, which also speaks Twilio's SMS shape),
and, for the last look, the real invoice service in-process on its own database."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator

import httpx
import pytest
from duewise_dev.catcher import Catcher
from duewise_dev.postgres import scratch_database
from fastapi import FastAPI
from notify.config import Settings
from notify.main import create_app
from notify.migrations import upgrade
from notify.models import metadata
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

NOTIFY_ADMIN_TOKEN = "test-notify-admin-" + secrets.token_hex(16)
INVOICE_ADMIN_TOKEN = "test-invoice-admin-" + secrets.token_hex(16)


@pytest.fixture(scope="session")
async def catcher() -> AsyncIterator[Catcher]:
    """A real SMTP server (aiosmtpd) and Twilio-shaped SMS API on free ports."""
    c = Catcher(smtp_port=0, http_port=0)
    await c.start()
    try:
        yield c
    finally:
        await c.stop()


@pytest.fixture(scope="session")
async def notify_db_url(pg_server_url: str) -> AsyncIterator[str]:
    async with scratch_database(pg_server_url, "duewise_notify_test", upgrade) as url:
        yield url


@pytest.fixture(scope="session")
def notify_settings(notify_db_url: str, catcher: Catcher, kafka_bootstrap: str) -> Settings:
    return Settings(
        database_url=notify_db_url,
        kafka_bootstrap_servers=kafka_bootstrap,
        admin_token=NOTIFY_ADMIN_TOKEN,
        smtp_url=catcher.smtp_url,
        sms_url=catcher.http_url,
        webhook_allow_private=True,  # the test receivers listen on loopback
        public_url="http://notify.test",
        collections_email="collections@example.com",
    )


@pytest.fixture(scope="session")
async def notify_app(notify_settings: Settings) -> AsyncIterator[FastAPI]:
    application = create_app(notify_settings)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture(scope="session")
def notify_engine(notify_app: FastAPI) -> AsyncEngine:
    e: AsyncEngine = notify_app.state.engine
    return e


@pytest.fixture
def maker(notify_app: FastAPI) -> async_sessionmaker[AsyncSession]:
    m: async_sessionmaker[AsyncSession] = notify_app.state.sessionmaker
    return m


@pytest.fixture(autouse=True)
async def _clean(request: pytest.FixtureRequest) -> AsyncIterator[None]:
    """Empty every notify table (keeping the tokens) and the catcher before each test."""
    if "notify_app" not in request.fixturenames and "maker" not in request.fixturenames:
        yield
        return
    engine: AsyncEngine = request.getfixturevalue("notify_engine")
    tables = [t.name for t in metadata.sorted_tables if t.name != "api_token"]
    async with engine.begin() as conn:
        await conn.execute(text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))
    c: Catcher = request.getfixturevalue("catcher")
    c.store.mails.clear()
    c.store.sms.clear()
    yield


@pytest.fixture
async def nclient(notify_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=notify_app),
        base_url="http://notify.test",
        headers={"Authorization": f"Bearer {NOTIFY_ADMIN_TOKEN}"},
    ) as c:
        yield c


# --- the real invoice service, for the last look ------------------------------------------


@pytest.fixture(scope="session")
async def invoice_app(pg_server_url: str, kafka_bootstrap: str) -> AsyncIterator[FastAPI]:
    from invoice.config import Settings as InvoiceSettings
    from invoice.main import create_app as create_invoice_app
    from invoice.migrations import upgrade as upgrade_invoice

    async with scratch_database(
        pg_server_url, "duewise_invoice_for_notify", upgrade_invoice
    ) as url:
        application = create_invoice_app(
            InvoiceSettings(
                database_url=url,
                kafka_bootstrap_servers=kafka_bootstrap,
                admin_token=INVOICE_ADMIN_TOKEN,
            )
        )
        async with application.router.lifespan_context(application):
            yield application


@pytest.fixture
async def invoice_client(invoice_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=invoice_app),
        base_url="http://invoice.test",
        headers={"Authorization": f"Bearer {INVOICE_ADMIN_TOKEN}"},
    ) as c:
        yield c
