"""Measures of one customer's payment behaviour, read from its state at its own "today".

Shared by the profile document, the warning signs and the score, so the three never
disagree about what "days to pay in the last 90 days" means.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from risk.domain.state import CustomerState

RECENT_DAYS = 90
BASELINE_DAYS = 365
PERIOD_DAYS = 30


@dataclass(frozen=True)
class PayStats:
    """Days to pay and days late over the allocations of payments in a window."""

    count: int
    amount: int
    avg_days_to_pay: float | None
    weighted_days_to_pay: float | None
    avg_days_late: float | None
    weighted_days_late: float | None

    def as_dict(self) -> dict[str, float | int | None]:
        return {
            "payments": self.count,
            "amount": self.amount,
            "avg_days_to_pay": self.avg_days_to_pay,
            "weighted_days_to_pay": self.weighted_days_to_pay,
            "avg_days_late": self.avg_days_late,
            "weighted_days_late": self.weighted_days_late,
        }


def _r(x: float) -> float:
    return round(x, 1)


def pay_stats(state: CustomerState, start: int, end: int) -> PayStats:
    """Allocations of unreversed payments received in [start, end) (ordinals)."""
    n = amount = dtp = late = wdtp = wlate = 0
    for p in state.payments:
        if p["reversed"] or not start <= p["on"] < end:
            continue
        for a in p["allocs"]:
            n += 1
            amount += a["amount"]
            dtp += a["days_to_pay"]
            late += a["days_late"]
            wdtp += a["days_to_pay"] * a["amount"]
            wlate += a["days_late"] * a["amount"]
    if not n:
        return PayStats(0, 0, None, None, None, None)
    return PayStats(
        n,
        amount,
        _r(dtp / n),
        _r(wdtp / amount) if amount else None,
        _r(late / n),
        _r(wlate / amount) if amount else None,
    )


def recent_and_baseline(state: CustomerState) -> tuple[PayStats, PayStats]:
    """The last 90 days, and the 12 months before them."""
    today = state.today
    recent = pay_stats(state, today - RECENT_DAYS + 1, today + 1)
    baseline = pay_stats(state, today - RECENT_DAYS - BASELINE_DAYS + 1, today - RECENT_DAYS + 1)
    return recent, baseline


def balances(state: CustomerState, today: int | None = None) -> dict[str, tuple[int, int]]:
    """Currency -> (open, overdue) balance; overdue means past its due date on `today`."""
    today = state.today if today is None else today
    out: dict[str, tuple[int, int]] = {}
    for inv in state.invoices.values():
        if inv["balance"] <= 0 or inv["status"] in ("void", "written_off"):
            continue
        open_, overdue = out.get(inv["currency"], (0, 0))
        open_ += inv["balance"]
        if inv["due"] < today:
            overdue += inv["balance"]
        out[inv["currency"]] = (open_, overdue)
    return out


def main_currency(state: CustomerState) -> str | None:
    """The customer's own currency, else the currency of most of its invoices."""
    if state.currency:
        return state.currency
    counts = Counter(inv["currency"] for inv in state.invoices.values())
    return min(counts, key=lambda c: (-counts[c], c)) if counts else None


def snapshot_before(state: CustomerState, currency: str, days: int) -> tuple[int, int] | None:
    """(open, overdue) as last seen in the 30-day period `days` before today's period."""
    periods = state.snapshots.get(currency, {})
    target = state.today // PERIOD_DAYS - days // PERIOD_DAYS
    found = periods.get(str(target))
    return (found[0], found[1]) if found else None


def closed_invoices(state: CustomerState, start: int, end: int) -> list[tuple[int, int, int]]:
    """(closed on, due, reminders before payment) of invoices paid in full in [start, end)."""
    out = []
    for inv in state.invoices.values():
        closed = inv["closed"]
        if closed is not None and start <= closed < end:
            out.append((closed, inv["due"], inv["reminders_at_close"] or 0))
    out.sort()
    return out


def on_time_rate(state: CustomerState, days: int = BASELINE_DAYS) -> tuple[float | None, int]:
    """Share of invoices paid in full by their due date among those closed in the window."""
    closed = closed_invoices(state, state.today - days + 1, state.today + 1)
    if not closed:
        return None, 0
    return round(sum(1 for c, due, _ in closed if c <= due) / len(closed), 3), len(closed)


def partial_share(state: CustomerState, days: int = BASELINE_DAYS) -> tuple[float | None, int]:
    """Share of the window's unreversed payments that left an invoice partly unpaid."""
    start = state.today - days + 1
    window = [p for p in state.payments if not p["reversed"] and p["on"] >= start]
    if not window:
        return None, 0
    return round(sum(1 for p in window if p["partial"]) / len(window), 3), len(window)


def trailing_partial_run(state: CustomerState) -> list[str]:
    """Ids of the unbroken run of partial payments at the end of the history."""
    run: list[str] = []
    for p in reversed(state.payments):
        if p["reversed"]:
            continue
        if not p["partial"]:
            break
        run.append(p["id"])
    return run[::-1]


def usual_method(
    methods: list[str], *, min_payments: int, dominance: float
) -> tuple[str, float] | None:
    """The method of at least `dominance` of at least `min_payments` payments, if any."""
    if len(methods) < min_payments:
        return None
    counts = Counter(methods)
    method, n = min(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    share = n / len(methods)
    return (method, round(share, 3)) if share >= dominance else None


def count_since(days: list[int], start: int) -> int:
    return sum(1 for d in days if d >= start)


def credit_use(state: CustomerState) -> tuple[int, int, float] | None:
    """(open balance, credit limit, use) in the customer's currency, when it has a limit."""
    currency = main_currency(state)
    if not state.credit_limit or currency is None:
        return None
    open_ = balances(state).get(currency, (0, 0))[0]
    return open_, state.credit_limit, round(open_ / state.credit_limit, 3)
