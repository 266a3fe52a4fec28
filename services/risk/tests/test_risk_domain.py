"""Pure domain functions, no database: the fold's holding and ordering, determinism, and the
analytics formulas on figures small enough to check by eye."""

from __future__ import annotations

import datetime as dt
import json

from risk.domain.analytics import MonthSales, bucket, cei, countback_dso, countback_months
from risk.domain.fold import step
from risk.domain.state import CustomerState
from risk_kit import TH, Script, d


def _fold(events: list, state: CustomerState | None = None) -> CustomerState:  # type: ignore[type-arg]
    state = state or CustomerState(customer_id=events[0].customer_id)
    for i, e in enumerate(events):
        step(state, e, f"e{i}", TH)
    return state


def test_a_replay_gives_the_same_state_byte_for_byte() -> None:
    s = Script()
    s.customer()
    for month in range(1, 10):
        inv = s.invoice(dt.date(2025, month, 1))
        s.pay(inv, inv.due_date + dt.timedelta(days=month), method="check" if month < 8 else "card")
    first = json.dumps(_fold(s.events).to_json(), sort_keys=True)
    again = json.dumps(_fold(list(s.events)).to_json(), sort_keys=True)
    assert first == again
    # "today" is the last event's own date, whatever the wall clock says
    assert _fold(s.events).now is not None
    assert (
        _fold(s.events).today
        == max(e.received_at for e in s.events if hasattr(e, "received_at")).toordinal()
    )


def test_events_before_their_customer_or_invoice_wait_in_the_state() -> None:
    s = Script()
    created = s.customer()
    inv = s.invoice(d("2026-01-05"))
    paid = s.pay(inv, d("2026-01-30"))
    state = _fold([paid, inv])
    assert [h["waiting_for"] for h in state.held] == ["customer", "customer"]
    assert not state.known
    in_order = _fold([created, inv, paid])
    late = _fold([created], state)
    assert late.held == []
    assert late.invoices == in_order.invoices
    assert late.payments == in_order.payments


def test_a_payment_for_an_invoice_not_seen_yet_waits_for_the_invoice() -> None:
    s = Script()
    created = s.customer()
    inv = s.invoice(d("2026-01-05"))
    paid = s.pay(inv, d("2026-01-30"))
    state = _fold([created, paid])
    assert [h["waiting_for"] for h in state.held] == [f"invoice:{inv.invoice_id}"]
    _fold([inv], state)
    assert state.held == []
    assert state.invoices[inv.invoice_id]["balance"] == 0


def test_countback_and_cei_formulas() -> None:
    months = [
        MonthSales(d("2026-03-01"), 31, 4000),
        MonthSales(d("2026-02-01"), 28, 2000),
        MonthSales(d("2026-01-01"), 31, 3000),
    ]
    assert countback_dso(5300, months) == 49.2  # 31 + 28 x 1300/2000
    assert countback_dso(4000, months) == 31.0
    assert countback_dso(0, months) == 0.0
    assert countback_dso(100, [MonthSales(d("2026-03-01"), 31, 0)]) is None
    assert countback_months(d("2026-03-15"), 2) == [
        (d("2026-03-01"), d("2026-03-15")),
        (d("2026-02-01"), d("2026-02-28")),
    ]
    assert cei(4000, 4000, 5300, 4000) == 67.5
    assert cei(0, 0, 0, 0) is None
    assert [bucket(x) for x in (-5, 0, 1, 30, 31, 60, 61, 90, 91)] == [
        "current",
        "current",
        "1_30",
        "1_30",
        "31_60",
        "31_60",
        "61_90",
        "61_90",
        "over_90",
    ]
