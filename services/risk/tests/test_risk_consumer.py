"""Through the real broker and the real EventConsumer: the live path and a rebuild from the
topics give the same profiles, scores and signal episodes; events that arrive before what
they depend on are held and applied when it arrives; malformed records go to the DLT."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from duewise_events import topic_reader
from duewise_events.catalogue import INVOICE_EVENTS, dead_letter_topic
from duewise_events.envelope import Envelope
from duewise_service.urls import plain_url
from risk.models import CustomerProfile, RiskSignal
from risk.service.rebuild import rebuild
from risk_kit import TH, LiveConsumer, Script, d, ensure_risk_topics, publish_in_order, send
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlmodel import col, select

DAY = dt.timedelta(days=1)


def _book() -> list[Script]:
    """Five customers with different habits, across all three topics."""
    switcher = Script()
    switcher.customer()
    for i in range(8):
        inv = switcher.invoice(d("2024-01-01") + 60 * i * DAY)
        switcher.reminder(inv.due_date - 3 * DAY, "pre_due_3", inv)
        switcher.pay(inv, inv.due_date - 2 * DAY, method="check")
    inv = switcher.invoice(d("2025-05-01"))
    switcher.pay(inv, d("2025-05-20"), method="card")

    late = Script(credit_limit=2500_00)
    late.customer()
    invs = [late.invoice(d("2025-01-01") + 20 * i * DAY) for i in range(5)]
    for i, inv in enumerate(invs[:3]):
        late.reminder(inv.due_date + 7 * DAY, "overdue_7", inv)
        late.response(inv.due_date + 8 * DAY, "cash_flow")
        late.promise_broken(inv, inv.due_date + 20 * DAY)
        late.pay(inv, inv.due_date + (25 + 10 * i) * DAY, amount=400_00, method="wire")
    bounced = late.pay(invs[3], invs[3].due_date + 40 * DAY, method="check")
    late.reverse(bounced, invs[3].due_date + 45 * DAY)

    early = Script(currency="JPY")
    early.customer()
    for month in range(1, 8):
        inv = early.invoice(dt.date(2025, month, 3), total=120_000)
        early.pay(inv, inv.due_date - 5 * DAY, method="ach")

    disputer = Script()
    disputer.customer()
    for day in (2, 9, 16):
        inv = disputer.invoice(dt.date(2025, 3, day))
        dispute = disputer.dispute(inv, dt.date(2025, 3, day + 3))
        disputer.resolve(dispute, dt.date(2025, 4, day), outcome="customer_wrong")
        disputer.response(dt.date(2025, 4, day), "not_received")
        disputer.pay(inv, dt.date(2025, 4, day + 5), method="sepa")

    quiet = Script()
    quiet.customer()
    quiet.invoice(d("2025-06-01"))
    return [switcher, late, early, disputer, quiet]


async def _snapshot(maker: async_sessionmaker[AsyncSession], ids: set[str]) -> dict[str, Any]:
    async with maker() as session:
        profiles = (
            await session.scalars(
                select(CustomerProfile).where(col(CustomerProfile.customer_id).in_(ids))
            )
        ).all()
        signals = (
            await session.scalars(select(RiskSignal).where(col(RiskSignal.customer_id).in_(ids)))
        ).all()
    return {
        "scores": {p.customer_id: (p.score, p.band, p.factors) for p in profiles},
        "states": {p.customer_id: p.state for p in profiles},
        "signals": sorted(
            (s.signal_id, s.customer_id, s.kind, s.raised_at, s.cleared_at, s.evidence)
            for s in signals
        ),
    }


@pytest.mark.parametrize("workers", [1, 2])
async def test_rebuild_from_the_topics_gives_the_live_scores(
    workers: int,
    maker: async_sessionmaker[AsyncSession],
    kafka_bootstrap: str,
    risk_db_url: str,
) -> None:
    await ensure_risk_topics(kafka_bootstrap)
    book = _book()
    ids = {s.cid for s in book}
    async with LiveConsumer(maker, kafka_bootstrap) as live:
        ours: set[str] = set()
        for script in book:
            ours.update(e.id for e in await publish_in_order(kafka_bootstrap, script.events, live))
        # At least once on the wire: a rebalance may hand a record over twice; the inbox
        # makes the second a no-op (and the comparison below shows nothing was doubled).
        # (The topics are shared with the other tests of the session, whose deliberate
        # poison records a new group reads too and rightly dead-letters: only ours count.)
        assert {o.status for o in live.outcomes if o.event_id in ours} <= {
            "applied",
            "duplicate",
        }
        assert ours <= {o.event_id for o in live.outcomes if o.status == "applied"}
        assert live.consumer.batches_applied > 0  # the batch path, not the fallback
    live_view = await _snapshot(maker, ids)
    assert len(live_view["scores"]) == len(book)
    bands = {band for _, band, _ in live_view["scores"].values()}
    assert len(bands) >= 2, live_view["scores"]  # the book is not all one band
    kinds = {kind for _, _, kind, *_ in live_view["signals"]}
    assert {"payment_method_switch", "steady_early_payment", "broken_promises"} <= kinds

    result = await rebuild(plain_url(risk_db_url), kafka_bootstrap, TH, group=None, workers=workers)
    assert result.applied >= sum(len(s.events) for s in book)
    rebuilt = await _snapshot(maker, ids)
    assert rebuilt["scores"] == live_view["scores"]
    assert rebuilt["signals"] == live_view["signals"]
    assert rebuilt["states"] == live_view["states"]


async def test_events_before_their_customer_and_invoice_are_held_then_applied(
    maker: async_sessionmaker[AsyncSession], kafka_bootstrap: str
) -> None:
    await ensure_risk_topics(kafka_bootstrap)
    s = Script()
    created = s.customer()
    inv = s.invoice(d("2026-01-05"))
    paid = s.pay(inv, d("2026-01-30"), method="wire")
    async with LiveConsumer(maker, kafka_bootstrap) as live:
        # the payment first, then the invoice, and only then the customer
        await publish_in_order(kafka_bootstrap, [paid, inv], live)
        async with maker() as session:
            row = await session.get(CustomerProfile, s.cid)
            assert row is not None
            assert not row.known
            assert [h["type"] for h in row.state["held"]] == [paid.TYPE, inv.TYPE]
            assert row.score is None
        await publish_in_order(kafka_bootstrap, [created], live)
    async with maker() as session:
        row = await session.get(CustomerProfile, s.cid)
        assert row is not None
        await session.refresh(row)
        assert row.known
        assert row.state["held"] == []
        assert [p["id"] for p in row.state["payments"]] == [paid.payment_id]
        assert row.state["invoices"][inv.invoice_id]["balance"] == 0
        assert row.score is not None


async def test_malformed_records_go_to_the_dead_letter_topic(
    maker: async_sessionmaker[AsyncSession], kafka_bootstrap: str
) -> None:
    await ensure_risk_topics(kafka_bootstrap)
    dlt = dead_letter_topic(INVOICE_EVENTS)
    since = await topic_reader.end_offsets(kafka_bootstrap, dlt)
    s = Script()
    good = s.customer()
    env = Envelope.wrap(good, source="duewise/invoice")
    broken_schema = Envelope.wrap(s.invoice(d("2026-01-01")), source="duewise/invoice")
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(
            INVOICE_EVENTS, value=b"{not json", key=s.cid.encode(), headers=env.headers()
        )
        body = {k: v for k, v in broken_schema.data.items() if k != "due_date"}
        await producer.send_and_wait(
            INVOICE_EVENTS,
            value=Envelope(**{**broken_schema.__dict__, "data": body}).body(),
            key=s.cid.encode(),
            headers=broken_schema.headers(),
        )
        async with LiveConsumer(maker, kafka_bootstrap) as live:
            after = await send(producer, s.customer())
            await live.wait_for([broken_schema.id, after.id])
            assert live.status(broken_schema.id) == ["dead_lettered"]
            assert live.status(after.id) == ["applied"]  # the partition kept moving
    finally:
        await producer.stop()
    parked = await topic_reader.read(
        kafka_bootstrap, dlt, since=since, until=lambda rs: len(rs) >= 2, timeout_s=10
    )
    errors = {dict(r.headers)["dlt_error_type"] for r in parked if r.key == s.cid.encode()}
    assert errors == {b"EnvelopeError"}
    assert len([r for r in parked if r.key == s.cid.encode()]) == 2
