"""The profile document a collector reads: every measure of the customer's payment behaviour
at its own "today", as plain JSON."""

from __future__ import annotations

from collections import Counter
from typing import Any

from risk.domain import metrics as m
from risk.domain.state import CustomerState, iso_day
from risk.domain.thresholds import Thresholds


def _trend(s: CustomerState, currency: str, open_: int, overdue: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for days in (30, 90):
        before = m.snapshot_before(s, currency, days)
        out[f"{days}_days"] = (
            None
            if before is None
            else {
                "open_before": before[0],
                "overdue_before": before[1],
                "open_change": open_ - before[0],
                "overdue_change": overdue - before[1],
            }
        )
    return out


def profile(s: CustomerState, th: Thresholds) -> dict[str, Any]:
    """Everything the issue lists, computed from the state alone."""
    recent, baseline = m.recent_and_baseline(s)
    rate, paid = m.on_time_rate(s)
    partial, payments = m.partial_share(s)
    year_start = s.today - 364
    closed = m.closed_invoices(s, year_start, s.today + 1)
    usual = m.usual_method(
        [method for _, method in s.methods],
        min_payments=th.method_min_payments,
        dominance=th.method_dominance,
    )
    counts = Counter(method for _, method in s.methods)
    use = m.credit_use(s)
    return {
        "customer_id": s.customer_id,
        "known": s.known,
        "name": s.name,
        "currency": s.currency,
        "as_of": s.now,
        "balances": {
            currency: {
                "open": open_,
                "overdue": overdue,
                "trend": _trend(s, currency, open_, overdue),
            }
            for currency, (open_, overdue) in sorted(m.balances(s).items())
        },
        "days_to_pay": {"last_90_days": recent.as_dict(), "previous_12_months": baseline.as_dict()},
        "on_time_rate": {"rate": rate, "invoices_paid_12_months": paid},
        "partial_payments": {"share": partial, "payments_12_months": payments},
        "payment_method": {
            "usual": usual[0] if usual else None,
            "usual_share": usual[1] if usual else None,
            "counts": dict(sorted(counts.items())),
            "history": [
                {"method": r[0], "from": iso_day(r[1]), "to": iso_day(r[2]), "payments": r[3]}
                for r in s.method_runs
            ],
        },
        "promises": {
            "made": s.promises_made,
            "kept": len(s.promises_kept),
            "broken": len(s.promises_broken),
        },
        "disputes": {
            "opened": len(s.disputes_opened),
            "open": len(s.open_disputes),
            "outcomes": dict(sorted(s.dispute_outcomes.items())),
        },
        "reversed_payments": [{**r, "on": iso_day(r["on"])} for r in s.reversals],
        "credit_limit": (
            None if use is None else {"limit": use[1], "open_balance": use[0], "use": use[2]}
        ),
        "reminders": {
            "total": s.reminders_total,
            "avg_before_payment": (
                round(sum(r for _, _, r in closed) / len(closed), 2) if closed else None
            ),
        },
        "responses": dict(sorted(s.response_counts.items())),
        "held_events": len(s.held),
    }
