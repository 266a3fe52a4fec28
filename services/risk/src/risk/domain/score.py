"""The risk score: 0-100 as the sum of points per factor, each with one sentence of why.

Only payment behaviour counts: days late, overdue share, on-time rate, promises, reversals,
credit limit use, a slowing trend, partial payments and disputes the customer lost. Nothing
about who the customer is, and nothing that is the seller's own process problem (a wrong
billing contact is a signal, never points). Every factor has a ceiling and the ceilings add
up to 100, so the score is the plain sum of the factors and needs no clamping.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

from duewise_events.catalogue import RiskBand, ScoreFactor

from risk.domain import metrics as m
from risk.domain.state import CustomerState
from risk.domain.thresholds import Thresholds


class Factor(NamedTuple):
    """One factor's points and why; a plain tuple because the live path scores after every
    event, and the catalogue's ScoreFactor is built only for what is published or stored."""

    name: str
    points: int
    explanation: str
    evidence: dict[str, Any]

    def published(self) -> ScoreFactor:
        return ScoreFactor(
            name=self.name,
            points=self.points,
            explanation=self.explanation,
            evidence=self.evidence,
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "points": self.points,
            "explanation": self.explanation,
            "evidence": self.evidence,
        }


def _factor(
    *, name: str, points: int, explanation: str, evidence: dict[str, Any] | None = None
) -> Factor:
    return Factor(name, points, explanation, evidence or {})


#: Each factor's ceiling; they add up to 100.
CEILINGS: dict[str, int] = {
    "days_late": 25,
    "overdue_share": 15,
    "on_time_rate": 15,
    "broken_promises": 10,
    "reversed_payments": 10,
    "credit_limit_use": 10,
    "slowing_trend": 5,
    "partial_payments": 5,
    "lost_disputes": 5,
}
assert sum(CEILINGS.values()) == 100
YEAR = 365


@dataclass(frozen=True)
class Score:
    score: int
    band: RiskBand
    factors: list[Factor]


def _cap(name: str, points: float) -> int:
    return max(0, min(CEILINGS[name], round(points)))


def _days_late(s: CustomerState) -> Factor:
    recent, _ = m.recent_and_baseline(s)
    stats, window = (
        (recent, "the last 90 days")
        if recent.count
        else (m.pay_stats(s, s.today - YEAR + 1, s.today + 1), "the last 12 months")
    )
    late = stats.weighted_days_late
    if late is None:
        return _factor(
            name="days_late", points=0, explanation="No payments to judge lateness by yet."
        )
    points = _cap("days_late", late / 2)
    return _factor(
        name="days_late",
        points=points,
        explanation=f"Paid on average {late} days {'late' if late > 0 else 'early or on time'}"
        f" (amount-weighted) over {window}: 1 point per 2 days late, at most 25.",
        evidence=stats.as_dict(),
    )


def _overdue_share(s: CustomerState) -> Factor:
    currency = m.main_currency(s)
    open_, overdue = m.balances(s).get(currency or "", (0, 0))
    share = overdue / open_ if open_ else 0.0
    return _factor(
        name="overdue_share",
        points=_cap("overdue_share", share * 15),
        explanation=f"{round(share * 100)}% of the open balance is overdue: 15 points at 100%.",
        evidence={"currency": currency, "open_balance": open_, "overdue_balance": overdue},
    )


def _on_time(s: CustomerState) -> Factor:
    rate, n = m.on_time_rate(s)
    if rate is None or n < 3:
        return _factor(
            name="on_time_rate",
            points=0,
            evidence={"invoices_paid": n},
            explanation="Fewer than 3 invoices paid in 12 months to judge by.",
        )
    return _factor(
        name="on_time_rate",
        points=_cap("on_time_rate", (1 - rate) * 15),
        explanation=f"{round(rate * 100)}% of the {n} invoices paid in 12 months were on "
        "time: 15 points at 0%.",
        evidence={"on_time_rate": rate, "invoices_paid": n},
    )


def _promises(s: CustomerState) -> Factor:
    broken = m.count_since(s.promises_broken, s.today - YEAR + 1)
    kept = m.count_since(s.promises_kept, s.today - YEAR + 1)
    return _factor(
        name="broken_promises",
        points=_cap("broken_promises", 5 * broken),
        explanation=f"{broken} promise(s) to pay broken in 12 months ({kept} kept): "
        "5 points each, at most 10.",
        evidence={"broken": broken, "kept": kept},
    )


def _reversals(s: CustomerState) -> Factor:
    recent = [r for r in s.reversals if r["on"] >= s.today - YEAR + 1]
    return _factor(
        name="reversed_payments",
        points=_cap("reversed_payments", 5 * len(recent)),
        explanation=f"{len(recent)} payment(s) reversed in 12 months: 5 points each, at most 10.",
        evidence={"reversed": len(recent), "reasons": sorted({r["reason"] for r in recent})},
    )


def _credit(s: CustomerState) -> Factor:
    use = m.credit_use(s)
    if use is None:
        return _factor(name="credit_limit_use", points=0, explanation="No credit limit set.")
    points = 10 if use[2] > 1 else 5 if use[2] > 0.8 else 0
    return _factor(
        name="credit_limit_use",
        points=points,
        explanation=f"Uses {round(use[2] * 100)}% of the credit limit: 5 points above 80%, "
        "10 above 100%.",
        evidence={"open_balance": use[0], "credit_limit": use[1], "use": use[2]},
    )


def _trend(s: CustomerState) -> Factor:
    recent, baseline = m.recent_and_baseline(s)
    if recent.avg_days_to_pay is None or baseline.avg_days_to_pay is None:
        return _factor(
            name="slowing_trend",
            points=0,
            explanation="Not enough payments to compare with a baseline.",
        )
    slower = recent.avg_days_to_pay - baseline.avg_days_to_pay
    return _factor(
        name="slowing_trend",
        points=_cap("slowing_trend", slower / 4),
        explanation=f"Days to pay moved by {round(slower, 1)} against the 12 months before "
        "the last 90 days: 1 point per 4 days slower, at most 5.",
        evidence={
            "last_90_days": recent.avg_days_to_pay,
            "previous_12_months": baseline.avg_days_to_pay,
        },
    )


def _partial(s: CustomerState) -> Factor:
    share, n = m.partial_share(s)
    share = share or 0.0
    return _factor(
        name="partial_payments",
        points=_cap("partial_payments", share * 5),
        explanation=f"{round(share * 100)}% of {n} payments in 12 months were partial: "
        "5 points at 100%.",
        evidence={"partial_share": share, "payments": n},
    )


def _disputes(s: CustomerState) -> Factor:
    lost = sum(
        1
        for on, outcome in s.disputes_resolved
        if outcome == "customer_wrong" and on >= s.today - YEAR + 1
    )
    return _factor(
        name="lost_disputes",
        points=_cap("lost_disputes", 2.5 * lost),
        explanation=f"{lost} dispute(s) in 12 months found the customer wrong: 2.5 points "
        "each, at most 5 (disputes the customer won count nothing).",
        evidence={"customer_wrong": lost},
    )


def band_of(score: int, th: Thresholds) -> RiskBand:
    if score >= th.band_critical:
        return "critical"
    if score >= th.band_high:
        return "high"
    if score >= th.band_medium:
        return "medium"
    return "low"


def score(s: CustomerState, th: Thresholds) -> Score:
    """The customer's score at its own "today": the same state always gives the same score."""
    factors = [
        f(s)
        for f in (
            _days_late,
            _overdue_share,
            _on_time,
            _promises,
            _reversals,
            _credit,
            _trend,
            _partial,
            _disputes,
        )
    ]
    total = sum(f.points for f in factors)
    return Score(total, band_of(total, th), factors)
