"""risk.events: a customer's band decides which segment policy its open invoices follow; the
change re-plans pending steps, a repeat changes nothing, and it also works through the broker."""

from __future__ import annotations

import asyncio
import datetime as dt
import secrets
import time
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from duewise_dev.broker import ensure_topics
from duewise_events import topic_reader
from duewise_events.catalogue import (
    INVOICE_EVENTS,
    RISK_EVENTS,
    RiskBand,
    RiskScoreChanged,
    ScoreFactor,
    dead_letter_topic,
)
from duewise_events.consumer import EventConsumer, Outcome
from duewise_events.envelope import Envelope
from dunning.clock import clock
from dunning.handlers import HANDLERS, TOPICS
from dunning.models import INBOX_TABLE, CustomerProjection
from dunning_kit import at, customer, feed, invoice, steps
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

HIGH_RISK: dict[str, Any] = {
    "name": "High risk",
    "spec": {
        "name": "High risk",
        "steps": [
            {"key": "early", "offset_days": -7, "template": "reminder_upcoming"},
            {"key": "due", "offset_days": 0, "template": "reminder_due_today", "tone": "firm"},
            {"key": "call", "offset_days": 3, "template": "reminder_overdue", "tone": "firm"},
        ],
    },
    "segment_risk_band": "high",
    "priority": 50,
}


def score(customer_id: str, band: RiskBand, points: int = 70) -> RiskScoreChanged:
    return RiskScoreChanged(
        customer_id=customer_id,
        score=points,
        band=band,
        factors=[
            ScoreFactor(name="slowing_payment", points=points, explanation="pays later and later")
        ],
        changed_at=dt.datetime(2026, 2, 1, 8, 0, tzinfo=dt.UTC),
    )


async def _pending(maker: async_sessionmaker[AsyncSession], invoice_id: str) -> dict[str, str]:
    return {
        s.step_key: s.policy_id for s in await steps(maker, invoice_id) if s.status == "pending"
    }


async def test_a_customer_turning_high_risk_gets_the_high_risk_policy(
    dclient: httpx.AsyncClient, maker: async_sessionmaker[AsyncSession]
) -> None:
    clock.set(at("2026-02-01 10:00"), freeze=True)
    r = await dclient.post("/v1/policies", json=HIGH_RISK)
    assert r.status_code == 201, r.text
    policy_id = r.json()["id"]
    c = customer()
    inv = invoice(c.customer_id)  # due 2026-03-02
    await feed(maker, c, inv)
    before = await _pending(maker, inv.invoice_id)
    assert before
    assert policy_id not in before.values()

    await feed(maker, score(c.customer_id, "high"))
    after = await _pending(maker, inv.invoice_id)
    assert after == {"early": policy_id, "due": policy_id, "call": policy_id}
    timeline = (await dclient.get(f"/v1/invoices/{inv.invoice_id}/timeline")).json()
    upcoming = [(e["step_key"], e["policy_id"]) for e in timeline["upcoming"]]
    assert upcoming == [("early", policy_id), ("due", policy_id), ("call", policy_id)]
    assert "High risk" in timeline["upcoming"][0]["reason"]
    cancelled = {e["step_key"] for e in timeline["other"] if e["status"] == "cancelled"}
    assert cancelled == set(before) - set(after)

    # The same band again (a new score within it) re-plans nothing.
    rows = {s.id: s.updated_at for s in await steps(maker, inv.invoice_id)}
    await feed(maker, score(c.customer_id, "high", points=75))
    assert {s.id: s.updated_at for s in await steps(maker, inv.invoice_id)} == rows

    # Back to medium: the segment no longer matches, the previous policy applies again.
    await feed(maker, score(c.customer_id, "medium", points=40))
    again = await _pending(maker, inv.invoice_id)
    assert policy_id not in again.values()
    assert set(again.values()) == set(before.values())


async def test_a_band_for_a_customer_not_seen_yet_waits_for_it(
    maker: async_sessionmaker[AsyncSession], dclient: httpx.AsyncClient
) -> None:
    clock.set(at("2026-02-01 10:00"), freeze=True)
    policy_id = (await dclient.post("/v1/policies", json=HIGH_RISK)).json()["id"]
    c = customer()
    inv = invoice(c.customer_id)
    await feed(maker, score(c.customer_id, "high"), c, inv)
    async with maker() as session:
        row = await session.get(CustomerProjection, c.customer_id)
        assert row is not None
        assert row.risk_band == "high"
    assert set((await _pending(maker, inv.invoice_id)).values()) == {policy_id}


async def test_risk_events_through_the_broker(
    dunning_app: object,
    dclient: httpx.AsyncClient,
    maker: async_sessionmaker[AsyncSession],
    kafka_bootstrap: str,
) -> None:
    assert TOPICS == sorted([INVOICE_EVENTS, RISK_EVENTS])  # noqa: SIM300
    clock.set(at("2026-02-01 10:00"), freeze=True)
    policy_id = (await dclient.post("/v1/policies", json=HIGH_RISK)).json()["id"]
    await ensure_topics(
        kafka_bootstrap, {t: 6 for t in TOPICS} | {dead_letter_topic(t): 6 for t in TOPICS}
    )
    group = f"dunning-risk-{secrets.token_hex(4)}"
    await _start_at_end(kafka_bootstrap, group)
    c = customer()
    inv = invoice(c.customer_id)
    await feed(maker, c, inv)
    changed = Envelope.wrap(score(c.customer_id, "high"), source="duewise/risk")
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    await producer.start()
    try:
        for env in (changed, changed):  # and a redelivery
            await producer.send_and_wait(
                RISK_EVENTS, value=env.body(), key=env.key.encode(), headers=env.headers()
            )
    finally:
        await producer.stop()

    outcomes: list[Outcome] = []
    consumer = EventConsumer(
        name=group,
        topics=TOPICS,
        handlers=HANDLERS,
        session_factory=maker,
        inbox=INBOX_TABLE,
        bootstrap_servers=kafka_bootstrap,
        enable_idempotence=False,
        retry_backoff_s=0.01,
        session_timeout_ms=1500,
        heartbeat_interval_ms=300,
        on_outcome=outcomes.append,
    )
    stop = asyncio.Event()
    task = asyncio.create_task(consumer.run(stop))
    deadline = time.monotonic() + 30
    try:
        while sum(o.event_id == changed.id for o in outcomes) < 2:
            assert not task.done(), task.exception()
            assert time.monotonic() < deadline, "risk event not consumed in time"
            await asyncio.sleep(0.05)
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)
    assert [o.status for o in outcomes if o.event_id == changed.id] == ["applied", "duplicate"]
    assert set((await _pending(maker, inv.invoice_id)).values()) == {policy_id}


async def _start_at_end(bootstrap: str, group: str) -> None:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False
    )
    await consumer.start()
    try:
        tps: dict[TopicPartition, int] = {}
        for topic in TOPICS:
            ends = await topic_reader.end_offsets(bootstrap, topic)
            tps.update({TopicPartition(topic, p): off for p, off in ends.items()})
        consumer.assign(list(tps))
        await consumer.commit(tps)
    finally:
        await consumer.stop()
