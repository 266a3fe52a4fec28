"""The consumer's run handler (`EventConsumer(run_handler=...)`) against the real broker and
database: many events of a partition applied in one call, each with its own inbox row, and
the same guarantees as one at a time: one effect per event, a failing record found, retried
alone and dead-lettered while the records around it are applied."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Sequence

from aiokafka import AIOKafkaProducer
from duewise_events import topic_reader
from duewise_events.catalogue import Event, InvoiceIssued
from duewise_events.consumer import Delivery, EventConsumer, Outcome
from duewise_events.envelope import Envelope
from events_support import EFFECTS, INBOX_TABLE, make_consumer
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from sqlalchemy import func, insert, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from test_consumer import _async, effect_counts, envelope, produce, run_until, wire


class Recorder:
    """A run handler and the per-record handler of the same effect (one effects row per
    event), counting how each was called; an invoice of total 13 fails either way."""

    def __init__(self) -> None:
        self.runs: list[int] = []
        self.run_ids: list[list[str]] = []
        self.singles: Counter[str] = Counter()

    async def run(self, session: AsyncSession, deliveries: Sequence[Delivery]) -> None:
        self.runs.append(len(deliveries))
        self.run_ids.append([env.id for _, env in deliveries])
        rows = []
        for event, env in deliveries:
            assert isinstance(event, InvoiceIssued)
            if event.total == 13:
                raise ValueError("unlucky invoice")
            rows.append({"event_id": env.id, "customer_id": event.customer_id, "amount": 1})
        await session.execute(insert(EFFECTS), rows)

    def consumer(
        self,
        sessions: async_sessionmaker[AsyncSession],
        bootstrap: str,
        topic: str,
        outcomes: list[Outcome],
        *,
        across_partitions: bool = False,
    ) -> EventConsumer:
        consumer = make_consumer(
            sessions,
            bootstrap,
            topic,
            handler=self.single,
            run_handler=self.run,
            outcomes=outcomes,
        )
        consumer.runs_across_partitions = across_partitions
        consumer.poll_linger_s = 0.1 if across_partitions else 0.0
        return consumer

    async def single(self, session: AsyncSession, event: Event, env: Envelope) -> None:
        self.singles[env.id] += 1
        await self.run(session, [Delivery(event, env)])
        self.runs.pop()
        self.run_ids.pop()


async def test_a_run_is_applied_in_one_call_with_an_inbox_row_per_event(
    sessions: async_sessionmaker[AsyncSession],
    kafka_bootstrap: str,
    fresh_topic: str,
    spans: InMemorySpanExporter,
) -> None:
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    envs = [envelope("cus_run", i + 100) for i in range(30)]
    envs[0] = Envelope(**{**envs[0].__dict__, "traceparent": f"00-{trace_id}-00f067aa0ba902b7-01"})
    # one key: one partition, in order; the 6th comes twice within the run
    await produce(kafka_bootstrap, fresh_topic, [wire(e) for e in [*envs, envs[5]]])
    recorder, outcomes = Recorder(), list[Outcome]()
    consumer = recorder.consumer(sessions, kafka_bootstrap, fresh_topic, outcomes)
    stop = asyncio.Event()
    task = asyncio.create_task(consumer.run(stop))
    await run_until(task, stop, lambda: _async(len(outcomes) >= 31))
    assert await effect_counts(sessions) == Counter({e.id: 1 for e in envs})
    assert Counter(o.status for o in outcomes) == Counter({"applied": 30, "duplicate": 1})
    assert [o.event_id for o in outcomes if o.status == "duplicate"] == [envs[5].id]
    assert max(recorder.runs) > 1  # runs went to the run handler, not one call per event
    async with sessions() as s:
        inbox = (await s.execute(select(INBOX_TABLE.c.event_id, INBOX_TABLE.c.offset))).all()
    assert {row.event_id for row in inbox} == {e.id for e in envs}
    assert sorted(row.offset for row in inbox) == list(range(30))  # each its own offset
    # The run's span links to the producer's trace of each record that had one.
    (run_span,) = [
        s
        for s in spans.get_finished_spans()
        if s.attributes
        and s.attributes.get("messaging.destination.name") == fresh_topic
        and "messaging.batch.message_count" in s.attributes
        and any(format(link.context.trace_id, "032x") == trace_id for link in s.links)
    ]
    assert run_span.name == f"{fresh_topic} process"


async def test_a_failing_record_in_a_run_is_found_retried_alone_and_dead_lettered(
    sessions: async_sessionmaker[AsyncSession], kafka_bootstrap: str, fresh_topic: str
) -> None:
    before = [envelope("cus_bad", i + 100) for i in range(11)]
    bad = envelope("cus_bad", 13)
    after = [envelope("cus_bad", i + 200) for i in range(12)]
    await produce(kafka_bootstrap, fresh_topic, [wire(e) for e in [*before, bad, *after]])
    recorder, outcomes = Recorder(), list[Outcome]()
    consumer = recorder.consumer(sessions, kafka_bootstrap, fresh_topic, outcomes)
    stop = asyncio.Event()
    task = asyncio.create_task(consumer.run(stop))
    await run_until(task, stop, lambda: _async(len(outcomes) >= 24))
    good = [*before, *after]
    assert await effect_counts(sessions) == Counter({e.id: 1 for e in good})
    assert [o.status for o in outcomes if o.event_id == bad.id] == ["dead_lettered"]
    assert {o.status for o in outcomes if o.event_id != bad.id} == {"applied"}
    # Alone, it was tried as often as any failing record: max_attempts in all.
    assert recorder.singles[bad.id] == consumer.max_attempts
    # The records after it were applied in runs again, not one transaction each.
    assert max(recorder.runs[1:]) > 1
    dlt = await topic_reader.read(
        kafka_bootstrap, f"{fresh_topic}.dlt", until=lambda rs: len(rs) >= 1
    )
    assert [dict(r.headers)["dlt_error"] for r in dlt] == [b"ValueError: unlucky invoice"]
    async with sessions() as s:  # the failed attempts left nothing behind, not even an inbox row
        inbox = (
            await s.execute(select(func.count()).where(INBOX_TABLE.c.event_id == bad.id))
        ).scalar_one()
    assert inbox == 0


async def test_a_poll_across_partitions_is_one_run_and_a_failure_falls_back_per_partition(
    sessions: async_sessionmaker[AsyncSession], kafka_bootstrap: str, fresh_topic: str
) -> None:
    """runs_across_partitions: a poll's records of several partitions go to the run handler
    together; when one of them fails, each partition is worked on its own, as without."""
    first = [envelope(f"cus_{i % 12}", 100 + i) for i in range(36)]  # 12 keys, 6 partitions
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    await producer.start()
    try:  # written 1 ms apart: the order a run across partitions should keep
        t0 = int(time.time() * 1000) - 1000
        for i, e in enumerate(first):
            key, value, headers = wire(e)
            await producer.send_and_wait(
                fresh_topic, value=value, key=key, headers=headers, timestamp_ms=t0 + i
            )
    finally:
        await producer.stop()
    recorder, outcomes = Recorder(), list[Outcome]()
    consumer = recorder.consumer(
        sessions, kafka_bootstrap, fresh_topic, outcomes, across_partitions=True
    )
    stop = asyncio.Event()
    task = asyncio.create_task(consumer.run(stop))
    try:
        while len(outcomes) < 36:
            assert not task.done(), task.exception()
            await asyncio.sleep(0.05)
        bad = envelope("cus_3", 13)
        second = [envelope(f"cus_{i % 12}", 200 + i) for i in range(12)]
        await produce(kafka_bootstrap, fresh_topic, [wire(e) for e in [bad, *second]])
    finally:
        await run_until(task, stop, lambda: _async(len(outcomes) >= 49))
    assert await effect_counts(sessions) == Counter({e.id: 1 for e in [*first, *second]})
    assert [o.status for o in outcomes if o.event_id == bad.id] == ["dead_lettered"]
    async with sessions() as s:
        partition_of = dict(
            (await s.execute(select(INBOX_TABLE.c.event_id, INBOX_TABLE.c.partition))).all()
        )
    spans = [{partition_of[i] for i in ids if i in partition_of} for ids in recorder.run_ids]
    assert max(len(p) for p in spans) > 1  # a run that took records of several partitions
    # ... in the order they were written, across partitions
    written = {e.id: i for i, e in enumerate(first)}
    for ids in recorder.run_ids:
        order = [written[i] for i in ids if i in written]
        assert order == sorted(order)
