"""The outbox relay against the real PostgreSQL and the real broker."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest
from duewise_events import topic_reader
from duewise_events.catalogue import INVOICE_EVENTS, InvoiceIssued
from duewise_events.envelope import Envelope
from duewise_events.outbox import Outbox
from duewise_events.relay import OutboxRelay
from events_support import EFFECTS, INBOX_TABLE, consume_until
from opentelemetry.sdk.trace import TracerProvider
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker


def issued(customer: str, n: int = 1) -> InvoiceIssued:
    return InvoiceIssued(
        customer_id=customer,
        invoice_id=f"inv_{uuid.uuid4().hex[:8]}",
        number=f"INV-{n}",
        issue_date=dt.date(2026, 11, 23),
        due_date=dt.date(2026, 12, 23),
        currency="EUR",
        total=100 * n,
        balance=100 * n,
    )


@contextlib.asynccontextmanager
async def running(relay: OutboxRelay) -> AsyncIterator[OutboxRelay]:
    stop = asyncio.Event()
    task = asyncio.create_task(relay.run(stop))
    try:
        yield relay
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)


async def unpublished(dsn: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        return int(await conn.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NULL"))
    finally:
        await conn.close()


async def wait_until_published(dsn: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while await unpublished(dsn):
        assert time.monotonic() < deadline, "outbox not drained in time"
        await asyncio.sleep(0.05)


def ids_of(records: list[topic_reader.Record]) -> list[str]:
    return [dict(r.headers)["ce_id"].decode() for r in records]


async def test_committed_event_is_published_once_keyed_by_customer(
    sessions: async_sessionmaker[AsyncSession], outbox: Outbox, events_dsn: str, topics: str
) -> None:
    provider = TracerProvider()
    tracer = provider.get_tracer("test")
    since = await topic_reader.end_offsets(topics, INVOICE_EVENTS)
    with tracer.start_as_current_span("http POST /v1/invoices") as span:
        async with sessions() as s, s.begin():
            env = await outbox.add(s, issued("cus_A"))
        trace_id = format(span.get_span_context().trace_id, "032x")
    async with running(OutboxRelay(events_dsn, topics, lock_key=1)):
        records = await topic_reader.read(
            topics, INVOICE_EVENTS, since=since, until=lambda rs: env.id in ids_of(rs), idle_s=1.0
        )
        await wait_until_published(events_dsn)
    mine = [r for r in records if dict(r.headers)["ce_id"].decode() == env.id]
    assert len(mine) == 1
    record = mine[0]
    assert record.key == b"cus_A"
    headers = dict(record.headers)
    assert headers["ce_type"] == b"invoice.issued.v1"
    # The trace started in the "request" continues on the wire.
    assert headers["traceparent"].decode().split("-")[1] == trace_id
    back = Envelope.from_record(key=record.key, value=record.value, headers=record.headers)
    assert back.event() == issued("cus_A").model_copy(
        update={"invoice_id": back.data["invoice_id"]}
    )


async def test_row_committed_out_of_id_order_is_still_published(
    sessions: async_sessionmaker[AsyncSession], outbox: Outbox, events_dsn: str, topics: str
) -> None:
    since = await topic_reader.end_offsets(topics, INVOICE_EVENTS)
    async with running(OutboxRelay(events_dsn, topics, lock_key=2, poll_interval_s=0.2)):
        slow = sessions()
        await slow.begin()
        early = await outbox.add(slow, issued("cus_slow"))  # takes the lower id, commits last
        async with sessions() as s, s.begin():
            late = await outbox.add(s, issued("cus_fast"))
        before = await topic_reader.read(
            topics, INVOICE_EVENTS, since=since, until=lambda rs: late.id in ids_of(rs)
        )
        # The higher id is on the wire while the lower one is still uncommitted...
        assert late.id in ids_of(before)
        assert early.id not in ids_of(before)
        await slow.commit()
        await slow.close()
        records = await topic_reader.read(
            topics, INVOICE_EVENTS, since=since, until=lambda rs: early.id in ids_of(rs)
        )
    conn = await asyncpg.connect(events_dsn)
    id_early, id_late = [
        await conn.fetchval("SELECT id FROM outbox WHERE event_id = $1", e.id)
        for e in (early, late)
    ]
    await conn.close()
    assert id_early < id_late
    # ...and the lower id, committed afterwards, is published all the same.
    assert ids_of(records).count(early.id) == 1
    assert await unpublished(events_dsn) == 0


async def test_per_customer_order_is_kept(
    sessions: async_sessionmaker[AsyncSession], outbox: Outbox, events_dsn: str, topics: str
) -> None:
    since = await topic_reader.end_offsets(topics, INVOICE_EVENTS)
    sent: dict[str, list[str]] = {c: [] for c in ("cus_1", "cus_2", "cus_3")}
    for n in range(60):
        customer = f"cus_{n % 3 + 1}"
        async with sessions() as s, s.begin():
            sent[customer].append((await outbox.add(s, issued(customer, n))).id)
    async with running(OutboxRelay(events_dsn, topics, lock_key=3, batch_size=7)):
        records = await topic_reader.read(
            topics,
            INVOICE_EVENTS,
            since=since,
            until=lambda rs: len(set(ids_of(rs)) & {i for v in sent.values() for i in v}) == 60,
        )
    mine = {i for ids in sent.values() for i in ids}
    for customer, ids in sent.items():
        seen = [
            i
            for r, i in zip(records, ids_of(records), strict=True)
            if r.key == customer.encode() and i in mine
        ]
        assert seen == ids


async def test_rows_wait_while_the_broker_is_down_then_go(
    sessions: async_sessionmaker[AsyncSession], outbox: Outbox, events_dsn: str, tmp_path: Path
) -> None:
    from duewise_dev.broker import TansuBroker, ensure_topics
    from duewise_dev.pytest_plugin import free_port

    port = free_port()
    bootstrap = f"127.0.0.1:{port}"
    broker = TansuBroker(port)
    relay = OutboxRelay(events_dsn, bootstrap, lock_key=5, poll_interval_s=0.2)
    try:
        async with running(relay):
            async with sessions() as s, s.begin():
                env = await outbox.add(s, issued("cus_down"))
            await asyncio.sleep(2.0)
            assert await unpublished(events_dsn) == 1, "published with no broker?"
            broker.start()
            await ensure_topics(bootstrap, {INVOICE_EVENTS: 6})
            await wait_until_published(events_dsn, timeout=30)
            records = await topic_reader.read(
                bootstrap, INVOICE_EVENTS, until=lambda rs: env.id in ids_of(rs)
            )
            assert ids_of(records).count(env.id) == 1
    finally:
        broker.stop()


async def test_only_one_relay_is_active(events_dsn: str, topics: str) -> None:
    a = OutboxRelay(events_dsn, topics, lock_key=6, poll_interval_s=0.1)
    b = OutboxRelay(events_dsn, topics, lock_key=6, poll_interval_s=0.1)
    async with running(a):
        await asyncio.sleep(0.5)
        conn = await asyncpg.connect(events_dsn)
        held = await conn.fetchval(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = 6 AND granted"
        )
        await conn.close()
        assert held == 1
        async with running(b):
            await asyncio.sleep(0.5)
            conn = await asyncpg.connect(events_dsn)
            waiting_or_held = await conn.fetchval(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = 6"
            )
            await conn.close()
            assert waiting_or_held == 1  # b polls with try-lock: it never holds it beside a


@pytest.mark.slow
async def test_relay_killed_between_publish_and_mark_duplicates_on_the_wire(
    sessions: async_sessionmaker[AsyncSession], outbox: Outbox, events_dsn: str, topics: str
) -> None:
    since = await topic_reader.end_offsets(topics, INVOICE_EVENTS)
    async with sessions() as s, s.begin():
        env = await outbox.add(s, issued("cus_kill"))
    script = str(Path(__file__).with_name("run_relay.py"))
    proc = subprocess.Popen([sys.executable, script, events_dsn, topics, "60"])
    try:
        await topic_reader.read(
            topics, INVOICE_EVENTS, since=since, until=lambda rs: env.id in ids_of(rs)
        )
        assert await unpublished(events_dsn) == 1  # sent, acknowledged, not yet marked
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(10)
    assert proc.returncode == -signal.SIGKILL
    proc = subprocess.Popen([sys.executable, script, events_dsn, topics, "0"])
    try:
        await wait_until_published(events_dsn, timeout=20)
    finally:
        proc.terminate()
        proc.wait(10)
    records = await topic_reader.read(
        topics,
        INVOICE_EVENTS,
        since=since,
        until=lambda rs: ids_of(rs).count(env.id) >= 2,
        idle_s=0.5,
    )
    assert ids_of(records).count(env.id) == 2
    # ...and a consumer reading both copies records one effect.
    await consume_until(sessions, topics, INVOICE_EVENTS, {env.id})
    async with sessions() as s:
        effects = (
            await s.execute(select(func.count()).where(EFFECTS.c.event_id == env.id))
        ).scalar_one()
        inbox = (
            await s.execute(select(func.count()).where(INBOX_TABLE.c.event_id == env.id))
        ).scalar_one()
    assert (effects, inbox) == (1, 1)


async def test_add_many_stages_events_in_order_in_one_statement(
    sessions: async_sessionmaker[AsyncSession], outbox: Outbox, events_dsn: str, topics: str
) -> None:
    since = await topic_reader.end_offsets(topics, INVOICE_EVENTS)
    async with sessions() as s, s.begin():
        envs = await outbox.add_many(s, [issued("cus_bulk", n) for n in range(1, 6)])
    async with running(OutboxRelay(events_dsn, topics, lock_key=7)):
        records = await topic_reader.read(
            topics,
            INVOICE_EVENTS,
            since=since,
            until=lambda rs: {e.id for e in envs} <= set(ids_of(rs)),
        )
    wanted = {e.id for e in envs}
    assert [i for i in ids_of(records) if i in wanted] == [e.id for e in envs]
    assert await unpublished(events_dsn) == 0
