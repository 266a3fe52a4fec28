"""Fixtures for the events library: a scratch database with an outbox, an inbox and a table of
effects (what a handler did), against the real PostgreSQL and broker of the session."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from duewise_dev.broker import ensure_topics
from duewise_dev.postgres import scratch_database
from duewise_events.outbox import Outbox
from duewise_service.urls import sqlalchemy_url
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


@pytest.fixture(scope="session")
async def events_dsn(pg_server_url: str) -> AsyncIterator[str]:
    async with scratch_database(pg_server_url, "duewise_events_test") as dsn:
        engine = create_async_engine(sqlalchemy_url(dsn))
        async with engine.begin() as conn:
            await conn.run_sync(METADATA.create_all)
        await engine.dispose()
        yield dsn


@pytest.fixture(scope="session")
async def engine(events_dsn: str) -> AsyncIterator[AsyncEngine]:
    eng = create_async_engine(sqlalchemy_url(events_dsn))
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
