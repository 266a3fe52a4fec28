"""A consumer with a recording handler, for the events library's own tests."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable

from duewise_events.catalogue import Event, InvoiceIssued
from duewise_events.consumer import EventConsumer, Outcome, RunHandler
from duewise_events.envelope import Envelope
from duewise_events.tables import inbox_table, outbox_table
from sqlalchemy import Column, Integer, MetaData, Table, Text, insert, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

METADATA = MetaData()
OUTBOX_TABLE = outbox_table(METADATA)
INBOX_TABLE = inbox_table(METADATA)
EFFECTS = Table(
    "effects",
    METADATA,
    Column("event_id", Text, nullable=False),
    Column("customer_id", Text, nullable=False),
    Column("amount", Integer, nullable=False),
)


async def record_effect(session: AsyncSession, event: Event, envelope: Envelope) -> None:
    assert isinstance(event, InvoiceIssued)
    await session.execute(
        insert(EFFECTS).values(
            event_id=envelope.id, customer_id=event.customer_id, amount=event.total
        )
    )


def make_consumer(
    sessions: async_sessionmaker[AsyncSession],
    bootstrap: str,
    topic: str,
    *,
    name: str | None = None,
    handler: Callable[..., object] = record_effect,
    outcomes: list[Outcome] | None = None,
    run_handler: RunHandler | None = None,
) -> EventConsumer:
    return EventConsumer(
        name=name or f"test-{uuid.uuid4().hex[:8]}",
        topics=[topic],
        handlers={InvoiceIssued: handler},  # type: ignore[dict-item]
        session_factory=sessions,
        inbox=INBOX_TABLE,
        bootstrap_servers=bootstrap,
        retry_backoff_s=0.01,
        session_timeout_ms=1500,
        heartbeat_interval_ms=300,
        on_outcome=outcomes.append if outcomes is not None else None,
        run_handler=run_handler,
    )


async def consume_until(
    sessions: async_sessionmaker[AsyncSession],
    bootstrap: str,
    topic: str,
    event_ids: set[str],
    *,
    timeout: float = 20.0,
) -> None:
    """Run a fresh consumer group until every id in `event_ids` is in the inbox, plus a grace."""
    stop = asyncio.Event()
    consumer = make_consumer(sessions, bootstrap, topic)
    task = asyncio.create_task(consumer.run(stop))
    deadline = time.monotonic() + timeout
    try:
        while True:
            async with sessions() as s:
                done = set(
                    (
                        await s.execute(
                            select(INBOX_TABLE.c.event_id).where(
                                INBOX_TABLE.c.event_id.in_(event_ids)
                            )
                        )
                    ).scalars()
                )
            if done == event_ids:
                break
            assert time.monotonic() < deadline, f"not consumed: {event_ids - done}"
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)  # let any duplicate behind them arrive too
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)
