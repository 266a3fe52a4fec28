"""Bounces from notify mark a contact undeliverable: once, under the customer's lock, with one
customer.updated.v1; through the handler and through the real broker and consumer."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from duewise_dev.broker import ensure_topics
from duewise_events import topic_reader
from duewise_events.catalogue import (
    DUNNING_EVENTS,
    NOTIFY_EVENTS,
    MessageFailed,
    dead_letter_topic,
)
from duewise_events.consumer import EventConsumer, Outcome
from duewise_events.envelope import Envelope
from fastapi import FastAPI
from invoice.handlers import HANDLERS, TOPICS, on_message_failed
from invoice.models import INBOX_TABLE
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from .factories import new_customer, outbox_rows


def bounce(
    customer_id: str, contact_id: str | None, *, undeliverable: bool = True
) -> MessageFailed:
    return MessageFailed(
        customer_id=customer_id,
        message_id=f"msg_{uuid.uuid4().hex}",
        kind="reminder",
        channel="email",
        reason="550 5.1.1 mailbox unavailable",
        permanent=True,
        contact_id=contact_id,
        contact_undeliverable=undeliverable,
        failed_at=dt.datetime(2026, 12, 1, 9, 30, tzinfo=dt.UTC),
    )


def wrap(event: MessageFailed) -> Envelope:
    return Envelope.wrap(event, source="duewise/notify")


async def _two_contact_customer(client: httpx.AsyncClient) -> dict[str, Any]:
    return await new_customer(
        client,
        contacts=[
            {"name": "AP", "email": "ap@bounce.example", "role": "billing"},
            {"name": "CFO", "email": "cfo@bounce.example", "role": "escalation"},
        ],
    )


async def _contacts(client: httpx.AsyncClient, customer_id: str) -> dict[str, bool]:
    r = await client.get(f"/v1/customers/{customer_id}")
    assert r.status_code == 200, r.text
    return {c["email"]: c["undeliverable"] for c in r.json()["contacts"]}


def test_the_consumer_reads_notify_events_too() -> None:
    assert MessageFailed in HANDLERS
    assert sorted([DUNNING_EVENTS, NOTIFY_EVENTS]) == TOPICS


async def test_a_bounce_marks_the_contact_once_and_says_so_once(
    app: FastAPI, client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    c = await _two_contact_customer(client)
    ap, cfo = c["contacts"]
    sessions: async_sessionmaker[AsyncSession] = app.state.sessionmaker
    event = bounce(c["id"], ap["id"])
    async with sessions() as s, s.begin():
        await on_message_failed(s, event, wrap(event))
    assert await _contacts(client, c["id"]) == {
        "ap@bounce.example": True,
        "cfo@bounce.example": False,
    }
    [updated] = await outbox_rows(engine, "customer.updated.v1")
    assert updated["key"] == c["id"]
    assert updated["payload"]["changed"] == ["contacts"]
    snapshot = {x["id"]: x["undeliverable"] for x in updated["payload"]["contacts"]}
    assert snapshot == {ap["id"]: True, cfo["id"]: False}

    # A redelivery, and a second bounce for the same address: nothing changes, nothing emitted.
    again = bounce(c["id"], ap["id"])
    for e in (event, again):
        async with sessions() as s, s.begin():
            await on_message_failed(s, e, wrap(e))
    assert len(await outbox_rows(engine, "customer.updated.v1")) == 1


async def test_bounces_that_do_not_name_a_dead_contact_of_the_customer_change_nothing(
    app: FastAPI, client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    c = await _two_contact_customer(client)
    other = await new_customer(client)
    sessions: async_sessionmaker[AsyncSession] = app.state.sessionmaker
    for event in (
        bounce(c["id"], c["contacts"][0]["id"], undeliverable=False),  # a transient failure
        bounce(c["id"], None),  # no contact named
        bounce(c["id"], other["contacts"][0]["id"]),  # another customer's contact
        bounce(c["id"], "con_gone"),  # replaced since the message went out
        bounce("cus_unknown", c["contacts"][0]["id"]),
    ):
        async with sessions() as s, s.begin():
            await on_message_failed(s, event, wrap(event))
    assert set((await _contacts(client, c["id"])).values()) == {False}
    assert set((await _contacts(client, other["id"])).values()) == {False}
    assert await outbox_rows(engine, "customer.updated.v1") == []


async def test_concurrent_bounces_for_one_contact_emit_one_update(
    app: FastAPI, client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    c = await _two_contact_customer(client)
    sessions: async_sessionmaker[AsyncSession] = app.state.sessionmaker

    async def deliver(event: MessageFailed) -> None:
        async with sessions() as s, s.begin():
            await on_message_failed(s, event, wrap(event))

    await asyncio.gather(*(deliver(bounce(c["id"], c["contacts"][1]["id"])) for _ in range(5)))
    [updated] = await outbox_rows(engine, "customer.updated.v1")
    assert [x["undeliverable"] for x in updated["payload"]["contacts"]] == [False, True]


# --- through Kafka, with the real consumer ---------------------------------------------------


async def _start_group_at_end(bootstrap: str, group: str, topics: list[str]) -> None:
    """Commit the topics' current end offsets for `group`: it reads only what follows."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False
    )
    await consumer.start()
    try:
        tps: dict[TopicPartition, int] = {}
        for topic in topics:
            ends = await topic_reader.end_offsets(bootstrap, topic)
            tps.update({TopicPartition(topic, p): off for p, off in ends.items()})
        consumer.assign(list(tps))
        await consumer.commit(tps)
    finally:
        await consumer.stop()


async def _produce(bootstrap: str, envelopes: list[Envelope]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for env in envelopes:
            await producer.send_and_wait(
                NOTIFY_EVENTS, value=env.body(), key=env.key.encode(), headers=env.headers()
            )
    finally:
        await producer.stop()


async def _run_until(
    consumer: EventConsumer, cond: Callable[[], Awaitable[bool]], timeout: float = 30.0
) -> None:
    stop = asyncio.Event()
    task = asyncio.create_task(consumer.run(stop))
    deadline = time.monotonic() + timeout
    try:
        while not await cond():
            assert not task.done(), task.exception()
            assert time.monotonic() < deadline, "condition not reached in time"
            await asyncio.sleep(0.05)
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)


async def test_a_bounce_through_kafka_marks_the_contact_once(
    app: FastAPI, client: httpx.AsyncClient, engine: AsyncEngine, kafka_bootstrap: str
) -> None:
    topics = {t: 6 for t in TOPICS} | {dead_letter_topic(t): 6 for t in TOPICS}
    await ensure_topics(kafka_bootstrap, topics)
    group = f"invoice-test-{uuid.uuid4().hex[:8]}"
    await _start_group_at_end(kafka_bootstrap, group, TOPICS)
    c = await _two_contact_customer(client)
    first = wrap(bounce(c["id"], c["contacts"][0]["id"]))
    second = wrap(bounce(c["id"], c["contacts"][0]["id"]))
    # A redelivery (same event id) and a second bounce for the same address.
    await _produce(kafka_bootstrap, [first, first, second])

    outcomes: list[Outcome] = []

    async def all_seen() -> bool:
        return sum(o.event_id in {first.id, second.id} for o in outcomes) == 3

    consumer = EventConsumer(
        name=group,
        topics=TOPICS,
        handlers=HANDLERS,
        session_factory=app.state.sessionmaker,
        inbox=INBOX_TABLE,
        bootstrap_servers=kafka_bootstrap,
        enable_idempotence=False,
        retry_backoff_s=0.01,
        session_timeout_ms=1500,
        heartbeat_interval_ms=300,
        on_outcome=outcomes.append,
    )
    await _run_until(consumer, all_seen)
    assert [o.status for o in outcomes if o.event_id == first.id] == ["applied", "duplicate"]
    assert [o.status for o in outcomes if o.event_id == second.id] == ["applied"]
    assert (await _contacts(client, c["id"]))["ap@bounce.example"] is True
    assert len(await outbox_rows(engine, "customer.updated.v1")) == 1
