"""The score: points per factor that add up to the score, the same inputs giving the same
score, a band change announced once (pure functions, no database, then the live path)."""

from __future__ import annotations

import datetime as dt
import itertools

from duewise_events.catalogue import Event
from risk.domain.fold import step
from risk.domain.score import CEILINGS, band_of, score
from risk.domain.state import CustomerState
from risk.domain.thresholds import Thresholds
from risk_kit import TH, Script, d, feed, outbox
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

DAY = dt.timedelta(days=1)


def _troubled() -> Script:
    """Late, partial, broken promises, a bounced check, over its limit, a lost dispute."""
    s = Script(credit_limit=3000_00)
    s.customer()
    invs = [s.invoice(d("2025-06-01") + 15 * i * DAY) for i in range(6)]
    for i, inv in enumerate(invs[:4]):
        s.pay(inv, inv.due_date + (20 + 15 * i) * DAY, amount=600_00, method="wire")
        s.promise_broken(inv, inv.due_date + 10 * DAY)
    bounced = s.pay(invs[4], invs[4].due_date + 50 * DAY, method="check")
    s.reverse(bounced, invs[4].due_date + 55 * DAY)
    dispute = s.dispute(invs[5], invs[5].due_date + 5 * DAY)
    s.resolve(dispute, invs[5].due_date + 40 * DAY, outcome="customer_wrong")
    return s


def _fold(events: list[Event]) -> CustomerState:
    state = CustomerState(customer_id=events[0].customer_id)
    for i, e in enumerate(events):
        step(state, e, f"e{i}", TH)
    return state


def test_factors_add_up_to_the_score_and_stay_within_their_ceilings() -> None:
    state = _fold(_troubled().events)
    result = score(state, TH)
    assert result.score == sum(f.points for f in result.factors)
    assert 0 <= result.score <= 100
    assert {f.name for f in result.factors} == set(CEILINGS)
    for f in result.factors:
        assert 0 <= f.points <= CEILINGS[f.name], f
        assert f.explanation
    assert result.score >= TH.band_high, result
    assert result.band == band_of(result.score, TH)
    by_name = {f.name: f for f in result.factors}
    assert by_name["reversed_payments"].points == 5
    assert by_name["broken_promises"].points == 10
    assert by_name["credit_limit_use"].points == 10
    assert by_name["lost_disputes"].points == 2


def test_the_same_history_always_gives_the_same_score() -> None:
    events = _troubled().events
    first, second = score(_fold(events), TH), score(_fold(list(events)), TH)
    assert first == second
    # and a good payer scores 0 with every factor at 0
    good = Script()
    good.customer()
    for month in range(1, 7):
        inv = good.invoice(dt.date(2025, month, 1))
        good.pay(inv, inv.due_date - DAY)
    clean = score(_fold(good.events), TH)
    assert (clean.score, clean.band) == (0, "low")


def test_bands_follow_the_configured_thresholds() -> None:
    th = Thresholds(band_medium=10, band_high=20, band_critical=30)
    assert [band_of(x, th) for x in (0, 9, 10, 19, 20, 29, 30, 100)] == [
        "low", "low", "medium", "medium", "high", "high", "critical", "critical",
    ]  # fmt: skip


async def test_a_band_change_is_announced_with_its_factors(
    maker: async_sessionmaker[AsyncSession],
) -> None:
    s = _troubled()
    await feed(maker, s.events)
    changes = await outbox(maker, "risk.score_changed.v1")
    assert changes, "a troubled customer leaves the low band"
    for c in changes:
        assert c["score"] == sum(f["points"] for f in c["factors"])
        assert c["band"] != (c["previous_band"] or "low")
    bands = [c["band"] for c in changes]
    assert all(a != b for a, b in itertools.pairwise(bands))  # only on a change
