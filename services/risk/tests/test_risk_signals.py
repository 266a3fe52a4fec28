"""Each warning sign on a scripted history, through the live path against the real database:
raised once per episode with its evidence (one outbox event and one open row however many
more events keep the condition true), cleared when the condition ends."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest
from duewise_events.catalogue import Event
from risk.models import RiskSignal
from risk_kit import Script, d, feed, outbox
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlmodel import col, select

Scenario = tuple[Script, list[Event], list[Event], Callable[[dict[str, Any]], None]]
DAY = dt.timedelta(days=1)


def _checks_then_card() -> Scenario:
    """Years of checks, then card: the seed's example."""
    s = Script()
    s.customer()
    start = d("2024-01-01")
    for i in range(8):
        inv = s.invoice(start + 60 * i * DAY)
        s.pay(inv, inv.due_date - 2 * DAY, method="check")
    card1 = s.invoice(d("2025-05-01"))
    s.pay(card1, d("2025-05-20"), method="card")
    card2 = s.invoice(d("2025-06-01"))
    s.pay(card2, d("2025-06-20"), method="card")  # still the same episode
    raising = list(s.events)
    back = s.invoice(d("2025-07-01"))
    s.pay(back, d("2025-07-20"), method="check")

    def evidence(e: dict[str, Any]) -> None:
        assert e["usual_method"] == "check"
        assert e["new_method"] == "card"
        assert e["baseline_payments"] >= 5

    return s, raising, s.events[len(raising) :], evidence


def _slowing() -> Scenario:
    s = Script()
    s.customer()
    for month in range(1, 9):  # Jan-Aug 2025: paid in 30 days
        inv = s.invoice(dt.date(2025, month, 1))
        s.pay(inv, inv.issue_date + 30 * DAY, method="wire")
    for month in (9, 10):  # then 75 days
        inv = s.invoice(dt.date(2025, month, 1))
        s.pay(inv, inv.issue_date + 75 * DAY, method="wire")
    raising = list(s.events)
    for day in (20, 21, 22):  # and back to quick payment
        inv = s.invoice(dt.date(2025, 12, day))
        s.pay(inv, inv.issue_date + DAY, method="wire")

    def evidence(e: dict[str, Any]) -> None:
        assert e["last_90_days"]["avg_days_to_pay"] > e["previous_12_months"]["avg_days_to_pay"]

    return s, raising, s.events[len(raising) :], evidence


def _broken_promises() -> Scenario:
    s = Script()
    s.customer()
    inv = s.invoice(d("2026-01-01"))
    s.promise_broken(inv, d("2026-02-10"))
    s.promise_broken(inv, d("2026-02-20"))
    s.promise_broken(inv, d("2026-02-25"))  # same episode
    raising = list(s.events)
    s.promise_kept(inv, d("2026-03-01"))

    def evidence(e: dict[str, Any]) -> None:
        assert e["broken"] >= 2

    return s, raising, s.events[len(raising) :], evidence


def _reversed() -> Scenario:
    s = Script()
    s.customer()
    inv = s.invoice(d("2026-01-01"))
    pay = s.pay(inv, d("2026-01-20"))
    s.reverse(pay, d("2026-01-25"), reason="bounced check")
    s.pay(inv, d("2026-02-05"), method="wire")
    raising = list(s.events)
    s.invoice(d("2026-06-01"))  # the reversal is now older than 90 days

    def evidence(e: dict[str, Any]) -> None:
        assert e["reversals"][0]["reason"] == "bounced check"

    return s, raising, s.events[len(raising) :], evidence


def _over_limit() -> Scenario:
    s = Script(credit_limit=1500_00)
    s.customer()
    first = s.invoice(d("2026-01-01"))
    s.invoice(d("2026-01-05"))
    s.invoice(d("2026-01-06"), total=10_00)
    raising = list(s.events)
    s.pay(first, d("2026-01-20"))

    def evidence(e: dict[str, Any]) -> None:
        # raised by the second invoice; the third keeps the same episode open
        assert e == {"open_balance": 2000_00, "credit_limit": 1500_00, "use": 1.333,
                     "currency": "EUR"}  # fmt: skip

    return s, raising, s.events[len(raising) :], evidence


def _partials() -> Scenario:
    s = Script()
    s.customer()
    inv = s.invoice(d("2026-01-01"), total=3000_00)
    for day in (10, 20, 30, 31):
        s.pay(inv, dt.date(2026, 1, day), amount=500_00)
    raising = list(s.events)
    s.pay(inv, d("2026-02-10"))  # the rest, in full

    def evidence(e: dict[str, Any]) -> None:
        assert len(e["payments"]) >= 3

    return s, raising, s.events[len(raising) :], evidence


def _disputes() -> Scenario:
    s = Script()
    s.customer()
    for day in (1, 10, 20, 25):
        inv = s.invoice(dt.date(2026, 1, day))
        s.dispute(inv, dt.date(2026, 2, day))
    raising = list(s.events)
    s.invoice(d("2026-09-01"))  # half a year later

    def evidence(e: dict[str, Any]) -> None:
        assert e["opened"] >= 3

    return s, raising, s.events[len(raising) :], evidence


def _contact() -> Scenario:
    s = Script()
    s.customer()
    s.invoice(d("2026-01-01"))
    s.response(d("2026-02-05"), "forgot")
    s.response(d("2026-02-12"), "not_received")
    s.response(d("2026-02-19"), "not_received")
    raising = list(s.events)
    s.contacts_changed()

    def evidence(e: dict[str, Any]) -> None:
        assert e["responses"] == {"forgot": 1, "not_received": 1}  # raised by the second

    return s, raising, s.events[len(raising) :], evidence


def _growing() -> Scenario:
    s = Script()
    s.customer()
    start = d("2025-01-01")
    invoices = [s.invoice(start + 30 * i * DAY) for i in range(6)]  # never paid
    raising = list(s.events)
    for inv in invoices:
        s.pay(inv, d("2025-06-15"))

    def evidence(e: dict[str, Any]) -> None:
        assert e["currency"] == "EUR"

    return s, raising, s.events[len(raising) :], evidence


def _early() -> Scenario:
    s = Script()
    s.customer()
    for month in range(1, 7):
        inv = s.invoice(dt.date(2026, month, 1))
        s.pay(inv, inv.due_date - 3 * DAY, method="ach")
    raising = list(s.events)
    late = s.invoice(d("2026-07-01"))
    s.pay(late, late.due_date + 10 * DAY, method="ach")

    def evidence(e: dict[str, Any]) -> None:
        assert e["invoices"] == 5
        assert set(e["days_early"]) == {3}

    return s, raising, s.events[len(raising) :], evidence


SCENARIOS: dict[str, Callable[[], Scenario]] = {
    "payment_method_switch": _checks_then_card,
    "slowing_payment": _slowing,
    "broken_promises": _broken_promises,
    "reversed_payment": _reversed,
    "credit_limit_exceeded": _over_limit,
    "partial_payments": _partials,
    "repeated_disputes": _disputes,
    "contact_problem": _contact,
    "growing_balance": _growing,
    "steady_early_payment": _early,
}


def _of(events: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [e for e in events if e["kind"] == kind]


@pytest.mark.parametrize("kind", list(SCENARIOS))
async def test_signal_raised_once_then_cleared(
    kind: str, maker: async_sessionmaker[AsyncSession]
) -> None:
    script, raising, clearing, check_evidence = SCENARIOS[kind]()
    await feed(maker, raising)
    raised = _of(await outbox(maker, "risk.signal_raised.v1"), kind)
    assert len(raised) == 1, raised
    assert raised[0]["customer_id"] == script.cid
    assert raised[0]["summary"]
    check_evidence(raised[0]["evidence"])
    assert not _of(await outbox(maker, "risk.signal_cleared.v1"), kind)

    await feed(maker, clearing)
    cleared = _of(await outbox(maker, "risk.signal_cleared.v1"), kind)
    assert [c["signal_id"] for c in cleared] == [raised[0]["signal_id"]]
    assert len(_of(await outbox(maker, "risk.signal_raised.v1"), kind)) == 1
    async with maker() as session:
        row = await session.get(RiskSignal, raised[0]["signal_id"])
        assert row is not None
        assert row.cleared_at is not None
        assert row.clear_reason
        rows = (await session.scalars(select(RiskSignal).where(col(RiskSignal.kind) == kind))).all()
        assert len(rows) == 1


async def test_contact_problem_recommends_checking_the_billing_contact(
    maker: async_sessionmaker[AsyncSession],
) -> None:
    _, raising, _, _ = _contact()
    await feed(maker, raising)
    (raised,) = _of(await outbox(maker, "risk.signal_raised.v1"), "contact_problem")
    assert raised["recommendation"].startswith("Check the billing contact")
    assert raised["positive"] is False


async def test_steady_early_payment_is_a_positive_sign(
    maker: async_sessionmaker[AsyncSession],
) -> None:
    _, raising, _, _ = _early()
    await feed(maker, raising)
    (raised,) = _of(await outbox(maker, "risk.signal_raised.v1"), "steady_early_payment")
    assert raised["positive"] is True
    assert raised["recommendation"].startswith("Thank")
