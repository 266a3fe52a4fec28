"""Fee assessments from dunning become fee invoices: once per fee, through the outbox, with
bad ones dead-lettered, against the real database and broker."""

from __future__ import annotations

import asyncio
import datetime as dt
import re
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from duewise_dev.broker import ensure_topics
from duewise_events import topic_reader
from duewise_events.catalogue import DUNNING_EVENTS, FeeAssessed, dead_letter_topic
from duewise_events.consumer import EventConsumer, Outcome
from duewise_events.envelope import Envelope
from fastapi import FastAPI
from invoice.handlers import HANDLERS, FeeRejected, fee_invoice_number, on_fee_assessed
from invoice.models import INBOX_TABLE
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from .factories import new_customer, new_invoice, outbox_rows

DLT = dead_letter_topic(DUNNING_EVENTS)
ASSESSED_ON = dt.date(2026, 12, 31)


def fee_event(
    customer_id: str,
    invoice_id: str,
    *,
    fee_id: str | None = None,
    amount: int = 2500,
    currency: str = "EUR",
) -> FeeAssessed:
    return FeeAssessed(
        customer_id=customer_id,
        fee_id=fee_id or f"fee_{uuid.uuid4().hex}",
        invoice_id=invoice_id,
        kind="late_fee",
        amount=amount,
        currency=currency,
        step_key="final_notice",
        reason="flat late fee of 25.00 EUR at 30 days overdue (policy default v1)",
        assessed_on=ASSESSED_ON,
    )


def wrap(event: FeeAssessed) -> Envelope:
    return Envelope.wrap(event, source="duewise/dunning")


def sessions_of(app: FastAPI) -> async_sessionmaker[AsyncSession]:
    maker: async_sessionmaker[AsyncSession] = app.state.sessionmaker
    return maker


async def fee_invoices(engine: AsyncEngine, customer_id: str) -> list[dict[str, Any]]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            text(
                "SELECT id, number, external_id, kind, total, balance, status, currency, "
                "issue_date, due_date FROM invoice WHERE customer_id = :c AND kind = 'fee' "
                "ORDER BY id"
            ),
            {"c": customer_id},
        )
        return [dict(r._mapping) for r in rows]


async def fee_issued_events(engine: AsyncEngine) -> list[dict[str, Any]]:
    return [
        row
        for row in await outbox_rows(engine, "invoice.issued.v1")
        if row["payload"]["kind"] == "fee"
    ]


async def test_handler_issues_one_fee_invoice_per_fee(
    app: FastAPI, client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    c = await new_customer(client, payment_terms_days=14)
    original = await new_invoice(client, c["id"])
    event = fee_event(c["id"], original["id"])
    sessions = sessions_of(app)

    async with sessions() as s, s.begin():
        await on_fee_assessed(s, event, wrap(event))

    [fee] = await fee_invoices(engine, c["id"])
    assert fee["external_id"] == event.fee_id
    assert fee["number"] == fee_invoice_number(event.fee_id)
    assert fee["number"].startswith("FEE-")
    assert (fee["total"], fee["balance"], fee["status"]) == (2500, 2500, "open")
    assert fee["currency"] == "EUR"
    # Issued on the day it was assessed, due on the customer's payment terms.
    assert (fee["issue_date"], fee["due_date"]) == (ASSESSED_ON, ASSESSED_ON + dt.timedelta(14))

    r = await client.get(f"/v1/invoices/{fee['id']}")
    assert r.status_code == 200, r.text
    [line] = r.json()["lines"]
    assert (line["quantity"], line["unit_price"], line["amount"]) == (1, 2500, 2500)
    assert line["description"].startswith(f"Late fee on invoice {original['number']}: ")
    assert event.reason in line["description"]

    [issued] = await fee_issued_events(engine)
    assert issued["topic"] == "invoice.events"
    assert issued["key"] == c["id"]
    assert issued["payload"]["invoice_id"] == fee["id"]
    assert issued["payload"]["external_id"] == event.fee_id
    assert (issued["payload"]["total"], issued["payload"]["kind"]) == (2500, "fee")

    # Dunning re-emits the same assessment under a new event id: nothing more happens.
    async with sessions() as s, s.begin():
        await on_fee_assessed(s, event, wrap(event))
    assert len(await fee_invoices(engine, c["id"])) == 1
    assert len(await fee_issued_events(engine)) == 1

    # A second fee (another step) is a second invoice with its own number.
    other = fee_event(c["id"], original["id"], amount=100)
    async with sessions() as s, s.begin():
        await on_fee_assessed(s, other, wrap(other))
    assert sorted(f["total"] for f in await fee_invoices(engine, c["id"])) == [100, 2500]


async def test_handler_refuses_what_it_cannot_invoice(
    app: FastAPI, client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    c = await new_customer(client)
    someone_else = await new_customer(client)
    original = await new_invoice(client, c["id"])
    theirs = await new_invoice(client, someone_else["id"])
    sessions = sessions_of(app)
    bad = [
        (fee_event(c["id"], original["id"], currency="USD"), "is in USD but customer"),
        (fee_event(c["id"], "inv_missing"), "unknown invoice inv_missing"),
        (fee_event(c["id"], theirs["id"]), f"belongs to customer {someone_else['id']}"),
    ]
    for event, why in bad:
        with pytest.raises(FeeRejected, match=re.escape(why)):
            async with sessions() as s, s.begin():
                await on_fee_assessed(s, event, wrap(event))
    zero = fee_event(c["id"], original["id"], amount=0)
    async with sessions() as s, s.begin():
        await on_fee_assessed(s, zero, wrap(zero))
    assert await fee_invoices(engine, c["id"]) == []
    assert await fee_issued_events(engine) == []


# --- through Kafka, with the real consumer ---------------------------------------------------


async def _topics(bootstrap: str) -> None:
    await ensure_topics(bootstrap, {DUNNING_EVENTS: 6, DLT: 6})


async def _start_group_at_end(bootstrap: str, group: str, topic: str) -> None:
    """Commit the topic's current end offsets for `group`, so that it reads only what follows
    (records other tests left on the shared topic are not this test's business)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False
    )
    await consumer.start()
    try:
        ends = await topic_reader.end_offsets(bootstrap, topic)
        tps = {TopicPartition(topic, p): off for p, off in ends.items()}
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
                DUNNING_EVENTS, value=env.body(), key=env.key.encode(), headers=env.headers()
            )
    finally:
        await producer.stop()


def _consumer(app: FastAPI, bootstrap: str, group: str, outcomes: list[Outcome]) -> EventConsumer:
    return EventConsumer(
        name=group,
        topics=[DUNNING_EVENTS],
        handlers=HANDLERS,
        session_factory=sessions_of(app),
        inbox=INBOX_TABLE,
        bootstrap_servers=bootstrap,
        enable_idempotence=False,
        retry_backoff_s=0.01,
        session_timeout_ms=1500,
        heartbeat_interval_ms=300,
        on_outcome=outcomes.append,
    )


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


def _statuses(outcomes: list[Outcome], event_id: str) -> list[str]:
    return [o.status for o in outcomes if o.event_id == event_id]


async def test_fee_assessed_through_kafka_makes_one_fee_invoice(
    app: FastAPI, client: httpx.AsyncClient, engine: AsyncEngine, kafka_bootstrap: str
) -> None:
    await _topics(kafka_bootstrap)
    group = f"invoice-test-{uuid.uuid4().hex[:8]}"
    await _start_group_at_end(kafka_bootstrap, group, DUNNING_EVENTS)
    c = await new_customer(client)
    original = await new_invoice(client, c["id"])
    event = fee_event(c["id"], original["id"], amount=4200)
    first, reemitted = wrap(event), wrap(event)
    # A redelivery (same event id) and a re-emission (same fee, new event id).
    await _produce(kafka_bootstrap, [first, first, reemitted])

    outcomes: list[Outcome] = []

    async def all_seen() -> bool:
        return len(_statuses(outcomes, first.id)) == 2 and bool(_statuses(outcomes, reemitted.id))

    await _run_until(_consumer(app, kafka_bootstrap, group, outcomes), all_seen)
    assert _statuses(outcomes, first.id) == ["applied", "duplicate"]
    assert _statuses(outcomes, reemitted.id) == ["applied"]  # recorded, but no second invoice
    [fee] = await fee_invoices(engine, c["id"])
    assert (fee["external_id"], fee["total"], fee["kind"]) == (event.fee_id, 4200, "fee")
    assert len(await fee_issued_events(engine)) == 1
    async with engine.connect() as conn:
        inbox = await conn.scalar(
            select(func.count())
            .select_from(INBOX_TABLE)
            .where(INBOX_TABLE.c.event_id.in_([first.id, reemitted.id]))
        )
    assert inbox == 2


async def test_currency_mismatch_is_dead_lettered_and_the_next_fee_still_lands(
    app: FastAPI, client: httpx.AsyncClient, engine: AsyncEngine, kafka_bootstrap: str
) -> None:
    await _topics(kafka_bootstrap)
    group = f"invoice-test-{uuid.uuid4().hex[:8]}"
    await _start_group_at_end(kafka_bootstrap, group, DUNNING_EVENTS)
    dlt_since = await topic_reader.end_offsets(kafka_bootstrap, DLT)
    c = await new_customer(client)
    original = await new_invoice(client, c["id"])
    bad_event = fee_event(c["id"], original["id"], currency="USD")
    good_event = fee_event(c["id"], original["id"], amount=900)
    bad, good = wrap(bad_event), wrap(good_event)
    # Same customer, so same partition: the good one queues behind the bad one.
    await _produce(kafka_bootstrap, [bad, good])

    outcomes: list[Outcome] = []

    async def good_seen() -> bool:
        return bool(_statuses(outcomes, good.id))

    consumer = _consumer(app, kafka_bootstrap, group, outcomes)
    await _run_until(consumer, good_seen)
    assert _statuses(outcomes, bad.id) == ["dead_lettered"]
    assert _statuses(outcomes, good.id) == ["applied"]
    [fee] = await fee_invoices(engine, c["id"])
    assert (fee["external_id"], fee["total"]) == (good_event.fee_id, 900)

    def has_bad(records: list[topic_reader.Record]) -> bool:
        return any(dict(r.headers).get("ce_id") == bad.id.encode() for r in records)

    records = await topic_reader.read(kafka_bootstrap, DLT, since=dlt_since, until=has_bad)
    [parked] = [r for r in records if dict(r.headers).get("ce_id") == bad.id.encode()]
    headers = dict(parked.headers)
    error = headers["dlt_error"].decode()
    assert error.startswith("FeeRejected: ")
    assert f"fee {bad_event.fee_id} is in USD but customer {c['id']} is billed in EUR" in error
    assert headers["dlt_consumer"] == group.encode()
    assert headers["dlt_original_topic"] == DUNNING_EVENTS.encode()
    assert parked.value == bad.body()
    async with engine.connect() as conn:  # the failed attempts left no inbox row behind
        inbox = await conn.scalar(
            select(func.count()).select_from(INBOX_TABLE).where(INBOX_TABLE.c.event_id == bad.id)
        )
    assert inbox == 0
