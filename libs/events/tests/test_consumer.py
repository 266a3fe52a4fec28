"""The consumer base against the real broker and database: one effect per event, DLT, rebalance."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
import uuid
from collections import Counter

from aiokafka import AIOKafkaProducer
from duewise_events import topic_reader
from duewise_events.catalogue import Event, InvoiceIssued
from duewise_events.consumer import Outcome
from duewise_events.envelope import Envelope
from events_support import EFFECTS, INBOX_TABLE, make_consumer, record_effect
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker


def envelope(customer: str, total: int = 100) -> Envelope:
    event = InvoiceIssued(
        customer_id=customer,
        invoice_id=f"inv_{uuid.uuid4().hex[:8]}",
        number="INV-1",
        issue_date=dt.date(2026, 11, 23),
        due_date=dt.date(2026, 12, 23),
        currency="EUR",
        total=total,
        balance=total,
    )
    return Envelope.wrap(event, source="duewise/test")


async def produce(
    bootstrap: str, topic: str, items: list[tuple[bytes, bytes, list[tuple[str, bytes]]]]
) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for key, value, headers in items:
            await producer.send_and_wait(topic, value=value, key=key, headers=headers)
    finally:
        await producer.stop()


def wire(env: Envelope) -> tuple[bytes, bytes, list[tuple[str, bytes]]]:
    return env.key.encode(), env.body(), env.headers()


async def effect_counts(sessions: async_sessionmaker[AsyncSession]) -> Counter[str]:
    async with sessions() as s:
        rows = (await s.execute(select(EFFECTS.c.event_id))).scalars().all()
    return Counter(rows)


async def run_until(
    consumer_run: asyncio.Task[None], stop: asyncio.Event, cond, timeout: float = 20.0
) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    try:
        while not await cond():
            assert not consumer_run.done(), consumer_run.exception()
            assert time.monotonic() < deadline, "condition not reached in time"
            await asyncio.sleep(0.05)
    finally:
        stop.set()
        await asyncio.wait_for(consumer_run, 15)


async def test_redelivered_event_has_one_effect(
    sessions: async_sessionmaker[AsyncSession], kafka_bootstrap: str, fresh_topic: str
) -> None:
    env = envelope("cus_dup", 250)
    await produce(kafka_bootstrap, fresh_topic, [wire(env), wire(env), wire(env)])
    outcomes: list[Outcome] = []
    stop = asyncio.Event()
    consumer = make_consumer(sessions, kafka_bootstrap, fresh_topic, outcomes=outcomes)
    task = asyncio.create_task(consumer.run(stop))
    await run_until(task, stop, lambda: _async(len(outcomes) >= 3))
    assert [o.status for o in outcomes] == ["applied", "duplicate", "duplicate"]
    assert await effect_counts(sessions) == Counter({env.id: 1})


async def test_poison_goes_to_dlt_and_the_partition_keeps_moving(
    sessions: async_sessionmaker[AsyncSession], kafka_bootstrap: str, fresh_topic: str
) -> None:
    good_before = envelope("cus_p", 1)
    good_after = envelope("cus_p", 2)
    bad_headers = [h for h in good_before.headers() if h[0] != "ce_id"]
    bad_schema = Envelope(
        **{**good_before.__dict__, "id": "bad-schema", "data": {"customer_id": "cus_p"}}
    )
    # Same key: same partition, so "keeps moving" is about the records behind the poison.
    await produce(
        kafka_bootstrap,
        fresh_topic,
        [
            wire(good_before),
            (b"cus_p", b"{not json", good_before.headers()),
            (b"cus_p", b"{}", bad_headers),
            wire(bad_schema),
            wire(good_after),
        ],
    )
    stop = asyncio.Event()
    consumer = make_consumer(sessions, kafka_bootstrap, fresh_topic)
    task = asyncio.create_task(consumer.run(stop))

    async def both_applied() -> bool:
        return len(await effect_counts(sessions)) == 2

    await run_until(task, stop, both_applied)
    assert await effect_counts(sessions) == Counter({good_before.id: 1, good_after.id: 1})
    dlt = await topic_reader.read(
        kafka_bootstrap, f"{fresh_topic}.dlt", until=lambda rs: len(rs) >= 3
    )
    assert len(dlt) == 3
    errors = [dict(r.headers)["dlt_error"].decode() for r in dlt]
    assert "body is not JSON" in errors[0]
    assert "missing CloudEvents header(s): ce_id" in errors[1]
    assert "does not match its schema" in errors[2]
    first = dict(dlt[0].headers)
    assert first["dlt_original_topic"] == fresh_topic.encode()
    assert first["dlt_consumer"] == consumer.name.encode()
    assert dlt[0].value == b"{not json"  # the record is parked unchanged


async def test_handler_that_keeps_failing_is_retried_then_dead_lettered(
    sessions: async_sessionmaker[AsyncSession], kafka_bootstrap: str, fresh_topic: str
) -> None:
    attempts: Counter[str] = Counter()

    async def flaky(session: AsyncSession, event: Event, env: Envelope) -> None:
        attempts[env.id] += 1
        assert isinstance(event, InvoiceIssued)
        if event.total == 13:
            raise ValueError("unlucky invoice")
        await record_effect(session, event, env)

    bad, good = envelope("cus_f", 13), envelope("cus_f", 14)
    await produce(kafka_bootstrap, fresh_topic, [wire(bad), wire(good)])
    stop = asyncio.Event()
    consumer = make_consumer(sessions, kafka_bootstrap, fresh_topic, handler=flaky)
    task = asyncio.create_task(consumer.run(stop))

    async def good_applied() -> bool:
        return good.id in await effect_counts(sessions)

    await run_until(task, stop, good_applied)
    assert attempts[bad.id] == consumer.max_attempts
    assert await effect_counts(sessions) == Counter({good.id: 1})
    dlt = await topic_reader.read(
        kafka_bootstrap, f"{fresh_topic}.dlt", until=lambda rs: len(rs) >= 1
    )
    assert dict(dlt[0].headers)["dlt_error"] == b"ValueError: unlucky invoice"
    async with sessions() as s:  # the failed attempts left nothing behind, not even an inbox row
        inbox = (
            await s.execute(select(func.count()).where(INBOX_TABLE.c.event_id == bad.id))
        ).scalar_one()
    assert inbox == 0


async def test_offsets_are_committed_only_after_the_effect(
    sessions: async_sessionmaker[AsyncSession], kafka_bootstrap: str, fresh_topic: str
) -> None:
    """A consumer restarted in the same group resumes after what it committed: no replay."""
    first = [envelope(f"cus_{i}") for i in range(20)]
    await produce(kafka_bootstrap, fresh_topic, [wire(e) for e in first])
    group = f"g-{uuid.uuid4().hex[:6]}"
    outcomes: list[Outcome] = []
    stop = asyncio.Event()
    task = asyncio.create_task(
        make_consumer(sessions, kafka_bootstrap, fresh_topic, name=group, outcomes=outcomes).run(
            stop
        )
    )
    await run_until(task, stop, lambda: _async(len(outcomes) >= 20))
    second = [envelope(f"cus_{i}") for i in range(5)]
    await produce(kafka_bootstrap, fresh_topic, [wire(e) for e in second])
    outcomes2: list[Outcome] = []
    stop = asyncio.Event()
    task = asyncio.create_task(
        make_consumer(sessions, kafka_bootstrap, fresh_topic, name=group, outcomes=outcomes2).run(
            stop
        )
    )
    await run_until(task, stop, lambda: _async(len(outcomes2) >= 5))
    await asyncio.sleep(0)
    assert [o.status for o in outcomes2] == ["applied"] * 5
    assert {o.event_id for o in outcomes2} == {e.id for e in second}


async def test_rebalance_between_two_members_loses_and_doubles_nothing(
    sessions: async_sessionmaker[AsyncSession], kafka_bootstrap: str, fresh_topic: str
) -> None:
    envs = [envelope(f"cus_{i % 17}", i + 1) for i in range(300)]
    group = f"g-{uuid.uuid4().hex[:6]}"
    stop_a, stop_b = asyncio.Event(), asyncio.Event()
    a = asyncio.create_task(
        make_consumer(sessions, kafka_bootstrap, fresh_topic, name=group).run(stop_a)
    )
    await produce(kafka_bootstrap, fresh_topic, [wire(e) for e in envs[:100]])
    b = asyncio.create_task(
        make_consumer(sessions, kafka_bootstrap, fresh_topic, name=group).run(stop_b)
    )
    await produce(kafka_bootstrap, fresh_topic, [wire(e) for e in envs[100:200]])
    stop_a.set()  # member a leaves mid-run: its partitions move to b
    await asyncio.wait_for(a, 30)
    await produce(kafka_bootstrap, fresh_topic, [wire(e) for e in envs[200:]])

    async def all_applied() -> bool:
        return len(await effect_counts(sessions)) == len(envs)

    await run_until(b, stop_b, all_applied, timeout=60)
    assert await effect_counts(sessions) == Counter({e.id: 1 for e in envs})


async def test_consumer_span_continues_the_producers_trace(
    sessions: async_sessionmaker[AsyncSession],
    kafka_bootstrap: str,
    fresh_topic: str,
    spans: InMemorySpanExporter,
) -> None:
    trace_id, parent_span = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    env = envelope("cus_trace")
    env = Envelope(**{**env.__dict__, "traceparent": f"00-{trace_id}-{parent_span}-01"})
    await produce(kafka_bootstrap, fresh_topic, [wire(env)])
    outcomes: list[Outcome] = []
    stop = asyncio.Event()
    task = asyncio.create_task(
        make_consumer(sessions, kafka_bootstrap, fresh_topic, outcomes=outcomes).run(stop)
    )
    await run_until(task, stop, lambda: _async(len(outcomes) >= 1))
    (span,) = [
        s
        for s in spans.get_finished_spans()
        if s.attributes and s.attributes.get("messaging.message.id") == env.id
    ]
    assert span.name == f"{fresh_topic} process"
    assert format(span.context.trace_id, "032x") == trace_id
    assert span.parent is not None
    assert format(span.parent.span_id, "016x") == parent_span


async def _async(value: bool) -> bool:
    return value
