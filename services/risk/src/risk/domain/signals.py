"""Warning signs (and one good sign): each a condition read from the state at its "today".

`review` compares the conditions that hold now with the signals already open: a new one is
raised (once per episode, with its evidence), one whose condition ended is cleared. Signal
ids are derived from (customer, kind, episode number), so a rebuild names every episode as
the live path did.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from duewise_events.catalogue import RiskSignalCleared, RiskSignalRaised, SignalKind

from risk.domain import metrics as m
from risk.domain.effects import Effects
from risk.domain.state import CustomerState, iso_day
from risk.domain.thresholds import Thresholds

Severity = Literal["info", "warning", "critical"]
CONTACT_REASONS = ("forgot", "not_received", "wrong_contact")


@dataclass(frozen=True)
class Finding:
    """A condition that holds: what a collector reads, and the figures behind it."""

    summary: str
    evidence: dict[str, Any] = field(default_factory=dict)
    severity: Severity = "warning"
    recommendation: str | None = None
    positive: bool = False


def _money(amount: int, currency: str) -> str:
    return f"{amount} {currency} minor units"


def _rising_run(periods: dict[str, list[int]], now_period: int, n: int) -> list[int] | None:
    """The overdue balance of the last n+1 periods, oldest first, if it rose in each."""
    series = [periods[str(now_period)][1]]
    for i in range(1, n + 1):
        p = periods.get(str(now_period - i))
        if p is None or p[1] >= series[-1]:
            return None  # stops at the first period that did not rise (the common case)
        series.append(p[1])
    return series[::-1]


def growing_balance(s: CustomerState, th: Thresholds) -> Finding | None:
    now_period = s.today // m.PERIOD_DAYS
    for currency in sorted(s.snapshots):
        periods = s.snapshots[currency]
        overdue_now = periods.get(str(now_period), [0, 0])[1]
        if not overdue_now:
            continue  # nothing overdue now: nothing can have grown
        series = _rising_run(periods, now_period, th.growing_periods)
        if series is not None:
            return Finding(
                f"The overdue balance rose in each of the last {th.growing_periods} 30-day "
                f"periods, to {_money(overdue_now, currency)}.",
                {"currency": currency, "overdue_by_period": series, "rule": "consecutive"},
            )
        before = periods.get(str(now_period - 1))
        if before is None:
            continue
        grown = overdue_now - before[1]
        if grown >= th.growing_min_amount and (
            before[1] == 0 or grown * 100 > th.growing_pct * before[1]
        ):
            pct = None if before[1] == 0 else round(grown * 100 / before[1], 1)
            return Finding(
                f"The overdue balance grew from {_money(before[1], currency)} to "
                f"{_money(overdue_now, currency)} in 30 days.",
                {
                    "currency": currency,
                    "overdue_30_days_ago": before[1],
                    "overdue_now": overdue_now,
                    "growth_pct": pct,
                    "rule": "percent_in_30_days",
                },
            )
    return None


def payment_method_switch(s: CustomerState, th: Thresholds) -> Finding | None:
    if len(s.methods) <= th.method_recent:
        return None
    baseline = s.methods[: -th.method_recent]
    usual = m.usual_method(
        [mm for _, mm in baseline],
        min_payments=th.method_min_payments,
        dominance=th.method_dominance,
    )
    last_on, last_method = s.methods[-1]
    if usual is None or last_method == usual[0]:
        return None
    switched_on = last_on
    for on, method in reversed(s.methods):
        if method != last_method:
            break
        switched_on = on
    return Finding(
        f"Paid by {last_method} after {len(baseline)} payments mostly by {usual[0]} "
        f"({round(usual[1] * 100)}% since {iso_day(baseline[0][0])}).",
        {
            "usual_method": usual[0],
            "usual_share": usual[1],
            "baseline_payments": len(baseline),
            "baseline_since": iso_day(baseline[0][0]),
            "new_method": last_method,
            "switched_on": iso_day(switched_on),
            "last_payment_on": iso_day(last_on),
        },
        recommendation="A new way of paying can mean a cash squeeze; confirm nothing changed.",
    )


def slowing_payment(s: CustomerState, th: Thresholds) -> Finding | None:
    if len(s.payments) < th.slowing_min_recent + th.slowing_min_baseline:
        return None  # too few payments to compare, whatever their dates
    recent, baseline = m.recent_and_baseline(s)
    if recent.count < th.slowing_min_recent or baseline.count < th.slowing_min_baseline:
        return None
    assert recent.avg_days_to_pay is not None
    assert baseline.avg_days_to_pay is not None
    slower = recent.avg_days_to_pay - baseline.avg_days_to_pay
    if slower < th.slowing_min_days or recent.avg_days_to_pay < (
        th.slowing_ratio * max(baseline.avg_days_to_pay, 1.0)
    ):
        return None
    return Finding(
        f"Takes {recent.avg_days_to_pay} days to pay over the last 90 days against "
        f"{baseline.avg_days_to_pay} in the 12 months before.",
        {"last_90_days": recent.as_dict(), "previous_12_months": baseline.as_dict()},
    )


def broken_promises(s: CustomerState, th: Thresholds) -> Finding | None:
    if len(s.promises_broken) < th.broken_promises:
        return None  # cheap gates first: every check runs after every event
    start = s.today - th.promise_window_days + 1
    broken = [d for d in s.promises_broken if d >= start]
    if len(broken) < th.broken_promises:
        return None
    if any(k >= broken[-1] for k in s.promises_kept):
        return None  # a promise kept since the last broken one ends the episode
    return Finding(
        f"{len(broken)} promises to pay broken in the last {th.promise_window_days} days, "
        "none kept since.",
        {
            "broken": len(broken),
            "broken_on": [iso_day(d) for d in broken],
            "kept_in_window": m.count_since(s.promises_kept, start),
        },
        severity="critical" if len(broken) > th.broken_promises else "warning",
    )


def reversed_payment(s: CustomerState, th: Thresholds) -> Finding | None:
    if not s.reversals:
        return None
    start = s.today - th.reversal_window_days + 1
    recent = [r for r in s.reversals if r["on"] >= start]
    if not recent:
        return None
    last = recent[-1]
    return Finding(
        f"{len(recent)} payment(s) reversed in the last {th.reversal_window_days} days; the "
        f"last a {last['method']} payment of {_money(last['amount'], last['currency'])} "
        f"({last['reason']}).",
        {"reversals": [{**r, "on": iso_day(r["on"])} for r in recent]},
        severity="critical" if len(recent) > 1 else "warning",
    )


def credit_limit_exceeded(s: CustomerState, th: Thresholds) -> Finding | None:
    if not s.credit_limit:
        return None
    use = m.credit_use(s)
    if use is None or use[0] <= use[1]:
        return None
    currency = m.main_currency(s) or ""
    return Finding(
        f"The open balance of {_money(use[0], currency)} exceeds the credit limit of "
        f"{_money(use[1], currency)}.",
        {"open_balance": use[0], "credit_limit": use[1], "use": use[2], "currency": currency},
    )


def partial_payments(s: CustomerState, th: Thresholds) -> Finding | None:
    run = m.trailing_partial_run(s)
    if len(run) < th.partial_run:
        return None
    return Finding(
        f"The last {len(run)} payments each paid only part of an invoice.",
        {"payments": run},
    )


def repeated_disputes(s: CustomerState, th: Thresholds) -> Finding | None:
    if len(s.disputes_opened) < th.disputes:
        return None
    start = s.today - th.dispute_window_days + 1
    opened = [d for d in s.disputes_opened if d >= start]
    if len(opened) < th.disputes:
        return None
    outcomes: dict[str, int] = {}
    for on, outcome in s.disputes_resolved:
        if on >= start:
            outcomes[outcome] = outcomes.get(outcome, 0) + 1
    return Finding(
        f"{len(opened)} disputes opened in the last {th.dispute_window_days} days.",
        {
            "opened": len(opened),
            "opened_on": [iso_day(d) for d in opened],
            "outcomes": outcomes,
            "open_now": len(s.open_disputes),
        },
        recommendation="Repeated disputes often point at a billing error; review the invoices.",
    )


def contact_problem(s: CustomerState, th: Thresholds) -> Finding | None:
    if not s.responses and not s.undeliverable:
        return None
    # Responses from before the last change of contacts were about the old contacts.
    start = max(s.today - th.contact_window_days + 1, (s.contacts_changed_on or -1) + 1)
    reasons = [reason for on, reason in s.responses if on >= start and reason in CONTACT_REASONS]
    bounced = m.count_since(s.undeliverable, start)
    if len(reasons) + bounced < th.contact_responses:
        return None
    counts = {r: reasons.count(r) for r in CONTACT_REASONS if r in reasons}
    return Finding(
        f"{len(reasons)} responses say the reminders do not reach the right person "
        f"({', '.join(f'{k}: {v}' for k, v in counts.items()) or 'bounces'}); a process "
        "problem rather than the customer's will to pay.",
        {"responses": counts, "undeliverable": bounced, "since": iso_day(start)},
        severity="info",
        recommendation="Check the billing contact: the invoices may be going to the wrong person.",
    )


def steady_early_payment(s: CustomerState, th: Thresholds) -> Finding | None:
    if len(s.invoices) < th.early_invoices:
        return None
    closed = m.closed_invoices(s, 0, s.today + 1)[-th.early_invoices :]
    if len(closed) < th.early_invoices:
        return None
    early = [due - on for on, due, _ in closed]
    if min(early) < th.early_days:
        return None
    if any(overdue for _, overdue in m.balances(s).values()):
        return None
    return Finding(
        f"Paid the last {len(closed)} invoices early, on average "
        f"{round(sum(early) / len(early), 1)} days before the due date.",
        {"invoices": len(closed), "days_early": early},
        severity="info",
        recommendation="Thank the customer; consider rewarding steady early payment.",
        positive=True,
    )


Check = Callable[[CustomerState, Thresholds], Finding | None]

#: Every signal, and why its episode ends when the condition no longer holds.
CHECKS: dict[SignalKind, tuple[Check, str]] = {
    "growing_balance": (growing_balance, "the overdue balance stopped growing"),
    "payment_method_switch": (
        payment_method_switch,
        "the customer pays by its usual method again, or the new one became the usual",
    ),
    "slowing_payment": (slowing_payment, "days to pay are back near the customer's baseline"),
    "broken_promises": (broken_promises, "a promise was kept, or the broken ones are old"),
    "reversed_payment": (reversed_payment, "no reversed payment in the window any more"),
    "credit_limit_exceeded": (credit_limit_exceeded, "the open balance is within the limit"),
    "partial_payments": (partial_payments, "a payment paid an invoice in full"),
    "repeated_disputes": (repeated_disputes, "fewer disputes in the window"),
    "contact_problem": (contact_problem, "no more such responses, or the contacts changed"),
    "steady_early_payment": (steady_early_payment, "an invoice was paid late or is overdue"),
}


def signal_id(customer_id: str, kind: str, episode: int) -> str:
    digest = hashlib.sha256(f"{customer_id}\x00{kind}\x00{episode}".encode()).hexdigest()
    return f"sig_{digest[:28]}"


def findings(s: CustomerState, th: Thresholds) -> dict[SignalKind, Finding]:
    out: dict[SignalKind, Finding] = {}
    for kind, (check, _) in CHECKS.items():
        found = check(s, th)
        if found is not None:
            out[kind] = found
    return out


def review(s: CustomerState, th: Thresholds, effects: Effects) -> None:
    """Raise what began, clear what ended; the open set lives in the state."""
    now = s.instant
    assert now is not None
    found = findings(s, th)
    for kind, (_, reason) in CHECKS.items():
        is_open = kind in s.open_signals
        if kind in found and not is_open:
            f = found[kind]
            episode = s.episodes.get(kind, 0) + 1
            s.episodes[kind] = episode
            sid = signal_id(s.customer_id, kind, episode)
            s.open_signals[kind] = {"id": sid, "raised_at": now.isoformat()}
            effects.raised.append(
                RiskSignalRaised(
                    customer_id=s.customer_id,
                    signal_id=sid,
                    kind=kind,
                    positive=f.positive,
                    severity=f.severity,
                    summary=f.summary,
                    recommendation=f.recommendation,
                    evidence=f.evidence,
                    raised_at=now,
                )
            )
        elif kind not in found and is_open:
            sid = s.open_signals.pop(kind)["id"]
            effects.cleared.append(
                RiskSignalCleared(
                    customer_id=s.customer_id,
                    signal_id=sid,
                    kind=kind,
                    reason=reason,
                    cleared_at=now,
                )
            )
