"""Fixtures for the events library: a scratch database with an outbox, an inbox and a table of
effects (what a handler did), against the real PostgreSQL and broker of the session."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest
from duewise_dev.broker import ensure_topics
from duewise_events.outbox import Outbox
from events_support import METADATA, OUTBOX_TABLE
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)


def with_database(server_url: str, name: str) -> str:
    base, _, _ = server_url.rpartition("/")
    return f"{base}/{name}"


@pytest.fixture(scope="session")
async def events_dsn(pg_server_url: str) -> AsyncIterator[str]:
    name = f"duewise_events_test_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(pg_server_url)
    await admin.execute(f'CREATE DATABASE "{name}"')
    dsn = with_database(pg_server_url, name)
    engine = create_async_engine(dsn.replace("postgresql://", "postgresql+asyncpg://", 1))
    async with engine.begin() as conn:
        await conn.run_sync(METADATA.create_all)
    await engine.dispose()
    yield dsn
    await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
    await admin.close()


@pytest.fixture(scope="session")
async def engine(events_dsn: str) -> AsyncIterator[AsyncEngine]:
    eng = create_async_engine(events_dsn.replace("postgresql://", "postgresql+asyncpg://", 1))
    yield eng
    await eng.dispose()


@pytest.fixture
async def sessions(engine: AsyncEngine) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    async with engine.begin() as conn:
        await conn.exec_driver_sql("TRUNCATE outbox, inbox, effects")
    yield async_sessionmaker(engine, expire_on_commit=False)


@pytest.fixture
def outbox() -> Outbox:
    return Outbox(OUTBOX_TABLE, source="duewise/test")


@pytest.fixture(scope="session")
async def topics(kafka_bootstrap: str) -> str:
    await ensure_topics(kafka_bootstrap, {"invoice.events": 6, "invoice.events.dlt": 6})
    return kafka_bootstrap


@pytest.fixture
async def fresh_topic(kafka_bootstrap: str) -> str:
    """A topic of this test's own (6 partitions) with its DLT."""
    name = f"test.{uuid.uuid4().hex[:10]}"
    await ensure_topics(kafka_bootstrap, {name: 6, f"{name}.dlt": 6})
    return name


@pytest.fixture(scope="session")
def spans() -> InMemorySpanExporter:
    """Every span finished in this session, from the real SDK (installed once, globally)."""
    exporter = InMemorySpanExporter()
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return exporter
