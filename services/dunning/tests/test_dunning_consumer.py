"""invoice.events through the real broker and the real EventConsumer: schedule, then cancel;
a redelivered event has no second effect."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections import Counter

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from duewise_dev.broker import ensure_topics
from duewise_events import topic_reader
from duewise_events.catalogue import INVOICE_EVENTS, Event, dead_letter_topic
from duewise_events.consumer import EventConsumer, Outcome
from duewise_events.envelope import Envelope
from dunning.clock import clock
from dunning.handlers import HANDLERS
from dunning.models import INBOX_TABLE
from dunning_kit import at, customer, invoice, payment, steps
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker


async def _start_at_end(bootstrap: str, group: str) -> None:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False
    )
    await consumer.start()
    try:
        ends = await topic_reader.end_offsets(bootstrap, INVOICE_EVENTS)
        tps = {TopicPartition(INVOICE_EVENTS, p): off for p, off in ends.items()}
        consumer.assign(list(tps))
        await consumer.commit(tps)
    finally:
        await consumer.stop()


async def _produce(bootstrap: str, events: list[Event]) -> list[Envelope]:
    envelopes = [Envelope.wrap(e, source="duewise/invoice") for e in events]
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for env in [*envelopes, envelopes[0]]:  # the first one twice: a redelivery
            await producer.send_and_wait(
                INVOICE_EVENTS, value=env.body(), key=env.key.encode(), headers=env.headers()
            )
    finally:
        await producer.stop()
    return envelopes


async def test_invoice_events_through_the_broker(
    maker: async_sessionmaker[AsyncSession], kafka_bootstrap: str
) -> None:
    clock.set(at("2026-02-01 10:00"), freeze=True)
    await ensure_topics(kafka_bootstrap, {INVOICE_EVENTS: 6, dead_letter_topic(INVOICE_EVENTS): 6})
    group = f"dunning-test-{secrets.token_hex(4)}"
    await _start_at_end(kafka_bootstrap, group)
    c = customer()
    inv, paid = invoice(c.customer_id), invoice(c.customer_id)
    envelopes = await _produce(kafka_bootstrap, [c, inv, paid, payment(paid)])
    outcomes: list[Outcome] = []
    consumer = EventConsumer(
        name=group,
        topics=[INVOICE_EVENTS],
        handlers=HANDLERS,
        session_factory=maker,
        inbox=INBOX_TABLE,
        bootstrap_servers=kafka_bootstrap,
        retry_backoff_s=0.01,
        session_timeout_ms=1500,
        heartbeat_interval_ms=300,
        on_outcome=outcomes.append,
    )
    stop = asyncio.Event()
    task = asyncio.create_task(consumer.run(stop))
    deadline = time.monotonic() + 30
    try:
        # Wait for these records by id, not by count: Tansu's end offsets can be one short,
        # so the group may also see one record from before the test.
        wanted = Counter({e.id: 1 for e in envelopes}) + Counter({envelopes[0].id: 1})
        while not wanted <= Counter(o.event_id for o in outcomes):
            assert not task.done(), task.exception()
            assert time.monotonic() < deadline, outcomes
            await asyncio.sleep(0.05)
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)
    assert [o.status for o in outcomes if o.event_id == envelopes[0].id] == [
        "applied",
        "duplicate",
    ]
    assert {r.status for r in await steps(maker, inv.invoice_id)} == {"pending"}
    assert len(await steps(maker, inv.invoice_id)) == 7
    assert {r.status for r in await steps(maker, paid.invoice_id)} == {"cancelled"}
