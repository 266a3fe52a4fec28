"""Planning: when each step of a policy fires for one invoice, with what fee, and why.

`plan` is pure and stateless, so the preview endpoint, the timelines and the scheduler all
compute the same dates from the same inputs, whatever "today" is.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from dunning.domain.calendar import holiday_name, next_business_day, send_instant
from dunning.domain.fees import late_fee, simple_interest
from dunning.domain.policy import PolicySpec, SendWindow, Step

_NO_FEES_ON_FEES = "; no fee or interest: this invoice is itself a fee"
_WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


@dataclass(frozen=True)
class InvoiceFacts:
    """What planning needs to know about an invoice and its customer."""

    invoice_id: str
    customer_id: str
    number: str
    issue_date: dt.date
    due_date: dt.date
    total: int
    balance: int
    currency: str
    timezone: str
    country: str
    last_payment_date: dt.date | None = None
    #: "fee" for the invoice the invoice service makes of an assessed fee: it is owed, so it
    #: is reminded like any other, but no fee or interest is ever assessed on it.
    kind: str = "standard"


@dataclass(frozen=True)
class PlannedStep:
    index: int
    step: Step
    nominal_date: dt.date
    send_date: dt.date
    send_at: dt.datetime
    fee_amount: int
    interest_amount: int
    reason: str
    fired_at: dt.datetime | None = None

    @property
    def key(self) -> str:
        return self.step.key


def plan(
    facts: InvoiceFacts,
    policy: PolicySpec,
    *,
    fired: Mapping[str, dt.datetime] | None = None,
) -> list[PlannedStep]:
    """Every step that applies to this invoice, in order, with its send instant and amounts.

    A reminder meant for before the due date is left out when the invoice was issued on or
    after that day (there is nothing to remind of yet). `fired` marks steps already sent.
    """
    fired = fired or {}
    window = policy.send_window
    planned: list[PlannedStep] = []
    interest_from = _interest_start(facts)
    for index, step in enumerate(policy.steps):
        nominal = facts.due_date + dt.timedelta(days=step.offset_days)
        if step.offset_days < 0 and nominal <= facts.issue_date:
            continue
        send_date = next_business_day(
            nominal, window=window, country=facts.country, skip_holidays=policy.skip_holidays
        )
        chargeable = facts.kind != "fee"  # no fees on fees
        fee = late_fee(step.fee, facts.balance) if step.fee and chargeable else 0
        interest = 0
        if step.interest and chargeable:
            start = interest_from if step.interest.accrue_from == "last_payment" else facts.due_date
            interest = simple_interest(
                facts.balance, step.interest.annual_rate_bp, max(start, interest_from), send_date
            )
            interest_from = send_date  # the next interest step charges only the days after
        planned.append(
            PlannedStep(
                index=index,
                step=step,
                nominal_date=nominal,
                send_date=send_date,
                send_at=send_instant(send_date, window=window, timezone=facts.timezone),
                fee_amount=fee,
                interest_amount=interest,
                reason=_reason(facts, step, nominal, send_date, window, fee, interest)
                + ("" if chargeable or not (step.fee or step.interest) else _NO_FEES_ON_FEES),
                fired_at=fired.get(step.key),
            )
        )
    return planned


def latest_due(planned: Sequence[PlannedStep], now: dt.datetime) -> PlannedStep | None:
    """The step to send now: the latest one due that has not fired, if none after it fired.

    After downtime several steps may be past; only the latest goes out (catch-up without
    flooding), and the earlier ones are skipped for good.
    """
    due = [p for p in planned if p.send_at <= now]
    if not due or due[-1].fired_at is not None:
        return None
    latest = due[-1]
    if any(p.fired_at is not None for p in planned if p.index > latest.index):
        return None
    return latest


def in_send_window(
    now: dt.datetime, *, window: SendWindow, timezone: str, country: str, skip_holidays: bool = True
) -> bool:
    """Whether a message may go out at `now` in the customer's time zone."""
    local = now.astimezone(ZoneInfo(timezone))
    if not window.start <= local.time() < window.end:
        return False
    business = next_business_day(
        local.date(), window=window, country=country, skip_holidays=skip_holidays
    )
    return business == local.date()


def next_window_opening(
    now: dt.datetime, *, window: SendWindow, timezone: str, country: str, skip_holidays: bool = True
) -> dt.datetime:
    """The UTC instant the send window next opens after `now` (today's, if not open yet)."""
    local = now.astimezone(ZoneInfo(timezone))
    day = local.date()
    if local.time() >= window.start:  # today's window is open, over, or today is no business day
        day += dt.timedelta(days=1)
    day = next_business_day(day, window=window, country=country, skip_holidays=skip_holidays)
    return send_instant(day, window=window, timezone=timezone)


def _interest_start(facts: InvoiceFacts) -> dt.date:
    if facts.last_payment_date and facts.last_payment_date > facts.due_date:
        return facts.last_payment_date
    return facts.due_date


def _reason(
    facts: InvoiceFacts,
    step: Step,
    nominal: dt.date,
    send_date: dt.date,
    window: SendWindow,
    fee: int,
    interest: int,
) -> str:
    when = "on" if step.offset_days == 0 else (
        f"{abs(step.offset_days)} days {'after' if step.offset_days > 0 else 'before'}"
    )  # fmt: skip
    parts = [f"step {step.key!r} is {when} the due date {facts.due_date.isoformat()}"]
    if send_date != nominal:
        moved = [f"{nominal.isoformat()} is a {_WEEKDAYS[nominal.weekday()]}"]
        name = holiday_name(nominal, facts.country)
        if name:
            moved.append(f"a public holiday in {facts.country} ({name})")
        parts.append(f"{' and '.join(moved)}, so it moves to {send_date.isoformat()}")
    parts.append(f"sent at {window.start.strftime('%H:%M')} {facts.timezone}")
    if fee:
        parts.append(f"late fee {fee} {facts.currency} minor units on a balance of {facts.balance}")
    if interest:
        parts.append(f"interest {interest} {facts.currency} minor units")
    if step.credit_hold:
        parts.append("the customer goes on credit hold")
    return "; ".join(parts)
