"""Folding events into a customer's state: `step(state, event, event_id)` applies one event
(holding it if it arrived before what it depends on, releasing what waited for it), then
re-reads the warning signs.

Pure and deterministic: "today" is the latest instant the applied events themselves speak of
(received_at, reversed_at, sent_at, …), never the wall clock, so the live consumer and a
rebuild from the topics compute the same thing. Held events live in the customer's own state
(everything about a customer shares its Kafka key), so the rebuild holds and releases them
exactly as the live path does.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from duewise_events.catalogue import (
    BY_TYPE,
    CreditHoldPlaced,
    CreditHoldReleased,
    CreditNoteIssued,
    CustomerCreated,
    CustomerGoodStanding,
    CustomerUpdated,
    DisputeOpened,
    DisputeResolved,
    DunningStageChanged,
    Event,
    FeeAssessed,
    InvoiceIssued,
    InvoiceVoided,
    InvoiceWrittenOff,
    MessageFailed,
    MessageSent,
    PaymentReceived,
    PaymentReversed,
    PromiseBroken,
    PromiseKept,
    ReminderDue,
    ResponseLogged,
)

from risk.domain.effects import Effects, Movement, ReminderFact
from risk.domain.metrics import PERIOD_DAYS, balances
from risk.domain.signals import review
from risk.domain.state import (
    HISTORY_DAYS,
    METHOD_MEMORY,
    AllocRec,
    CustomerState,
    InvoiceRec,
    day,
)
from risk.domain.thresholds import DEFAULT, Thresholds

#: Snapshot periods kept for the balance trend (a little over a year).
SNAPSHOT_PERIODS = 14
PRUNE_PERIODS = 6


def _midnight(d: dt.date) -> dt.datetime:
    return dt.datetime(d.year, d.month, d.day, tzinfo=dt.UTC)


def instant_of(event: Event) -> dt.datetime | None:
    """The instant an event speaks of, from its own fields; None for undated facts."""
    match event:
        case InvoiceIssued():
            return _midnight(event.issue_date)
        case PaymentReceived():
            return _midnight(event.received_at)
        case PaymentReversed():
            return event.reversed_at
        case InvoiceVoided():
            return event.voided_at
        case InvoiceWrittenOff():
            return event.written_off_at
        case DisputeOpened():
            return event.opened_at
        case DisputeResolved():
            return event.resolved_at
        case ReminderDue():
            return event.send_at
        case FeeAssessed():
            return _midnight(event.assessed_on)
        case PromiseKept():
            return _midnight(event.kept_on)
        case PromiseBroken():
            # broken once the promised day is over
            return _midnight(event.promised_date + dt.timedelta(days=1))
        case DunningStageChanged():
            return event.changed_at
        case CreditHoldPlaced():
            return event.placed_at
        case CreditHoldReleased():
            return event.released_at
        case MessageSent():
            return event.sent_at
        case MessageFailed():
            return event.failed_at
        case ResponseLogged():
            return event.logged_at
        case CustomerGoodStanding():
            return _midnight(event.reached_on)
    return None  # customers, credit notes: no date of their own


def _advance(state: CustomerState, event: Event) -> int:
    """Move the customer's "now" forward to the event's instant; today's ordinal."""
    instant = instant_of(event)
    if instant is not None:
        instant = instant.astimezone(dt.UTC)
        day = instant.date().toordinal()
        # a later day is later: only an event on the same day needs the full comparison
        if day < state.day:
            return state.day
        if state.now is None or day > state.day or instant > dt.datetime.fromisoformat(state.now):
            state.now = instant.isoformat()
            state.day = instant.date().toordinal()
    return state.day


class _Fold:
    """Applies events to one state, collecting effects."""

    def __init__(self, state: CustomerState, effects: Effects) -> None:
        self.s = state
        self.fx = effects

    # --- holding -----------------------------------------------------------------------

    def hold(self, waiting_for: str, event: Event, event_id: str) -> None:
        self.s.held.append(
            {
                "waiting_for": waiting_for,
                "event_id": event_id,
                "type": event.TYPE,
                "payload": event.model_dump(mode="json"),
            }
        )
        self.fx.held += 1

    def release(self, waiting_for: str) -> None:
        """Re-apply, in arrival order, what waited for `waiting_for` (it may be held again)."""
        ready = [h for h in self.s.held if h["waiting_for"] == waiting_for]
        if not ready:
            return
        self.s.held = [h for h in self.s.held if h["waiting_for"] != waiting_for]
        self.fx.held -= len(ready)
        for h in ready:
            self.apply(BY_TYPE[h["type"]].model_validate(h["payload"]), h["event_id"])

    def missing_invoice(self, invoice_ids: list[str]) -> str | None:
        return next((i for i in invoice_ids if i not in self.s.invoices), None)

    # --- applying ----------------------------------------------------------------------

    def apply(self, event: Event, event_id: str) -> None:
        if not self.s.known and not isinstance(event, CustomerCreated):
            self.hold("customer", event, event_id)
            return
        needs = _invoices_needed(event)
        missing = self.missing_invoice(needs)
        if missing is not None:
            self.hold(f"invoice:{missing}", event, event_id)
            return
        today = _advance(self.s, event)
        handler = _APPLY.get(type(event))
        if handler is not None:
            handler(self, event, today, event_id)
        self.fx.applied += 1
        if isinstance(event, CustomerCreated):
            self.release("customer")
        elif isinstance(event, InvoiceIssued):
            self.release(f"invoice:{event.invoice_id}")

    def move(
        self, invoice_id: str, inv: InvoiceRec, on: int, new_balance: int, kind: str, ref: str
    ) -> None:
        """Set an invoice's balance and record the change in the ledger."""
        delta = new_balance - inv["balance"]
        inv["balance"] = new_balance
        if delta:
            self.fx.movements.append(
                Movement(
                    self.s.customer_id,
                    invoice_id,
                    inv["currency"],
                    day(on),
                    day(inv["due"]),
                    delta,
                    kind,
                    ref,
                )
            )

    # --- customers ---------------------------------------------------------------------

    def customer(self, e: CustomerCreated, today: int, event_id: str) -> None:
        s = self.s
        if isinstance(e, CustomerUpdated) and "contacts" in e.changed:
            s.contacts_changed_on = today
        s.known, s.name, s.currency, s.credit_limit = True, e.name, e.currency, e.credit_limit
        s.owner = e.owner

    # --- invoices ----------------------------------------------------------------------

    def issued(self, e: InvoiceIssued, today: int, event_id: str) -> None:
        if e.invoice_id in self.s.invoices:
            return
        inv: InvoiceRec = {
            "currency": e.currency,
            "issued": e.issue_date.toordinal(),
            "due": e.due_date.toordinal(),
            "total": e.total,
            "balance": 0,
            "status": "open",
            "closed": None,
            "reminders": 0,
            "reminders_at_close": None,
        }
        self.s.invoices[e.invoice_id] = inv
        self.fx.movements.append(
            Movement(
                self.s.customer_id,
                e.invoice_id,
                e.currency,
                e.issue_date,
                e.due_date,
                e.total,
                "issued",
                e.invoice_id,
            )
        )
        inv["balance"] = e.total
        if e.balance != e.total:
            self.move(e.invoice_id, inv, today, e.balance, "credit", e.invoice_id)
        if e.balance == 0:
            inv["status"] = "paid"

    def credit_note(self, e: CreditNoteIssued, today: int, event_id: str) -> None:
        inv = self.s.invoices[e.invoice_id]
        self.move(e.invoice_id, inv, today, e.invoice_balance, "credit", e.credit_note_id)
        inv["status"] = e.invoice_status

    def voided(self, e: InvoiceVoided, today: int, event_id: str) -> None:
        inv = self.s.invoices[e.invoice_id]
        self.move(e.invoice_id, inv, today, 0, "void", e.invoice_id)
        inv["status"] = "void"

    def written_off(self, e: InvoiceWrittenOff, today: int, event_id: str) -> None:
        inv = self.s.invoices[e.invoice_id]
        self.move(
            e.invoice_id, inv, today, max(0, inv["balance"] - e.amount), "write_off", e.invoice_id
        )
        inv["status"] = "written_off"

    # --- payments ----------------------------------------------------------------------

    def payment(self, e: PaymentReceived, today: int, event_id: str) -> None:
        s = self.s
        if any(p["id"] == e.payment_id for p in s.payments):
            return
        allocs: list[AllocRec] = []
        partial = False
        for a in e.allocations:
            inv = s.invoices[a.invoice_id]
            self.move(a.invoice_id, inv, today, a.invoice_balance, "payment", e.payment_id)
            inv["status"] = a.invoice_status
            if a.invoice_balance > 0:
                partial = True
            elif inv["closed"] is None:
                inv["closed"], inv["reminders_at_close"] = today, inv["reminders"]
            allocs.append(
                {
                    "invoice": a.invoice_id,
                    "amount": a.amount,
                    "days_to_pay": today - inv["issued"],
                    "days_late": today - inv["due"],
                }
            )
        s.payments.append(
            {
                "id": e.payment_id,
                "on": today,
                "method": e.method,
                "amount": e.amount,
                "currency": e.currency,
                "partial": partial,
                "reversed": False,
                "allocs": allocs,
            }
        )
        s.methods.append([today, e.method])
        del s.methods[:-METHOD_MEMORY]
        last = s.method_runs[-1] if s.method_runs else None
        if last is not None and last[0] == e.method:
            last[2], last[3] = today, last[3] + 1
        else:
            s.method_runs.append([e.method, today, today, 1])

    def reversed(self, e: PaymentReversed, today: int, event_id: str) -> None:
        s = self.s
        if any(r["payment"] == e.payment_id for r in s.reversals):
            return
        for p in s.payments:
            if p["id"] == e.payment_id:
                p["reversed"] = True
        for a in e.allocations:
            inv = s.invoices[a.invoice_id]
            self.move(a.invoice_id, inv, today, a.invoice_balance, "reversal", e.payment_id)
            inv["status"] = a.invoice_status
            if a.invoice_balance > 0:
                inv["closed"] = inv["reminders_at_close"] = None
        s.reversals.append(
            {
                "on": today,
                "payment": e.payment_id,
                "amount": e.amount,
                "currency": e.currency,
                "method": e.method,
                "reason": e.reason,
            }
        )

    # --- disputes ----------------------------------------------------------------------

    def dispute_opened(self, e: DisputeOpened, today: int, event_id: str) -> None:
        if e.dispute_id in self.s.open_disputes:
            return
        self.s.open_disputes.append(e.dispute_id)
        self.s.disputes_opened.append(today)

    def dispute_resolved(self, e: DisputeResolved, today: int, event_id: str) -> None:
        s = self.s
        if e.dispute_id in s.open_disputes:
            s.open_disputes.remove(e.dispute_id)
        s.dispute_outcomes[e.outcome] = s.dispute_outcomes.get(e.outcome, 0) + 1
        s.disputes_resolved.append([today, e.outcome])
        inv = s.invoices[e.invoice_id]
        self.move(e.invoice_id, inv, today, e.invoice_balance, "dispute", e.dispute_id)
        inv["status"] = e.invoice_status

    # --- dunning and notify ------------------------------------------------------------

    def reminder(self, e: ReminderDue, today: int, event_id: str) -> None:
        s = self.s
        s.reminders.append(today)
        s.reminders_total += 1
        for item in e.invoices:
            inv = s.invoices.get(item.invoice_id)
            if inv is not None and inv["balance"] > 0:
                inv["reminders"] += 1
        self.fx.reminders.append(
            ReminderFact(
                e.notice_id,
                s.customer_id,
                e.step_key,
                e.local_date,
                e.currency,
                tuple(i.invoice_id for i in e.invoices),
                False,
            )
        )

    def message_sent(self, e: MessageSent, today: int, event_id: str) -> None:
        if e.kind != "reminder":
            return
        self.fx.reminders.append(
            ReminderFact(
                e.cause_id,
                self.s.customer_id,
                e.step_key or "unknown",
                e.sent_at.astimezone(dt.UTC).date(),
                None,
                tuple(e.invoice_ids),
                True,
            )
        )

    def message_failed(self, e: MessageFailed, today: int, event_id: str) -> None:
        if e.contact_undeliverable:
            self.s.undeliverable.append(today)

    def response(self, e: ResponseLogged, today: int, event_id: str) -> None:
        s = self.s
        s.responses.append([today, e.reason])
        s.response_counts[e.reason] = s.response_counts.get(e.reason, 0) + 1
        if e.reason == "promise":
            s.promises_made += 1

    def promise_kept(self, e: PromiseKept, today: int, event_id: str) -> None:
        self.s.promises_kept.append(today)

    def promise_broken(self, e: PromiseBroken, today: int, event_id: str) -> None:
        self.s.promises_broken.append(today)

    def stage_changed(self, e: DunningStageChanged, today: int, event_id: str) -> None:
        self.s.stage = e.to_stage  # kept for the worklist; it does not move the score

    def hold_placed(self, e: CreditHoldPlaced, today: int, event_id: str) -> None:
        self.s.on_hold = True

    def hold_released(self, e: CreditHoldReleased, today: int, event_id: str) -> None:
        self.s.on_hold = False

    def only_time(self, e: Event, today: int, event_id: str) -> None:
        """Fees, good standing: they only move "now" forward."""


def _invoices_needed(event: Event) -> list[str]:
    """The invoices an event cannot be applied without."""
    match event:
        case PaymentReceived() | PaymentReversed():
            return [a.invoice_id for a in event.allocations]
        case CreditNoteIssued() | InvoiceVoided() | InvoiceWrittenOff() | DisputeResolved():
            return [event.invoice_id]
    return []


_Handler = Callable[[_Fold, Event, int, str], None]

#: The table of contents of the fold: every event type the risk service reacts to.
_APPLY: dict[type[Event], _Handler] = {
    CustomerCreated: _Fold.customer,  # type: ignore[dict-item]
    CustomerUpdated: _Fold.customer,  # type: ignore[dict-item]
    InvoiceIssued: _Fold.issued,  # type: ignore[dict-item]
    CreditNoteIssued: _Fold.credit_note,  # type: ignore[dict-item]
    InvoiceVoided: _Fold.voided,  # type: ignore[dict-item]
    InvoiceWrittenOff: _Fold.written_off,  # type: ignore[dict-item]
    PaymentReceived: _Fold.payment,  # type: ignore[dict-item]
    PaymentReversed: _Fold.reversed,  # type: ignore[dict-item]
    DisputeOpened: _Fold.dispute_opened,  # type: ignore[dict-item]
    DisputeResolved: _Fold.dispute_resolved,  # type: ignore[dict-item]
    ReminderDue: _Fold.reminder,  # type: ignore[dict-item]
    FeeAssessed: _Fold.only_time,
    PromiseKept: _Fold.promise_kept,  # type: ignore[dict-item]
    PromiseBroken: _Fold.promise_broken,  # type: ignore[dict-item]
    DunningStageChanged: _Fold.stage_changed,  # type: ignore[dict-item]
    CreditHoldPlaced: _Fold.hold_placed,  # type: ignore[dict-item]
    CreditHoldReleased: _Fold.hold_released,  # type: ignore[dict-item]
    MessageSent: _Fold.message_sent,  # type: ignore[dict-item]
    MessageFailed: _Fold.message_failed,  # type: ignore[dict-item]
    CustomerGoodStanding: _Fold.only_time,
    ResponseLogged: _Fold.response,  # type: ignore[dict-item]
}
CONSUMED: tuple[type[Event], ...] = tuple(_APPLY)


def _snapshot(state: CustomerState) -> None:
    """Remember this period's open and overdue balance per currency (the trend's input)."""
    today = state.today
    period = str(today // PERIOD_DAYS)
    now = balances(state, today)
    for currency in set(now) | set(state.snapshots):
        periods = state.snapshots.setdefault(currency, {})
        open_, overdue = now.get(currency, (0, 0))
        periods[period] = [open_, overdue]
        if len(periods) > SNAPSHOT_PERIODS:
            for old in sorted(periods, key=int)[:-SNAPSHOT_PERIODS]:
                del periods[old]


def _prune(state: CustomerState) -> None:
    """Drop history older than HISTORY_DAYS every PRUNE_PERIODS: states stay small (the
    windows filter by date, so what waits to be pruned changes nothing but the size)."""
    period = state.today // PERIOD_DAYS
    if period - state.pruned_period < PRUNE_PERIODS:
        return
    state.pruned_period = period
    cutoff = state.today - HISTORY_DAYS
    state.payments = [p for p in state.payments if p["on"] >= cutoff]
    state.invoices = {
        k: v
        for k, v in state.invoices.items()
        if v["balance"] > 0 or max(v["closed"] or 0, v["issued"]) >= cutoff
    }
    state.reversals = [r for r in state.reversals if r["on"] >= cutoff]
    for name in (
        "promises_kept",
        "promises_broken",
        "disputes_opened",
        "undeliverable",
        "reminders",
    ):
        setattr(state, name, [d for d in getattr(state, name) if d >= cutoff])
    state.responses = [r for r in state.responses if r[0] >= cutoff]
    state.disputes_resolved = [r for r in state.disputes_resolved if r[0] >= cutoff]


def step(
    state: CustomerState,
    event: Event,
    event_id: str,
    thresholds: Thresholds = DEFAULT,
    *,
    review_signals: bool = True,
) -> Effects:
    """Apply `event` (and what it releases) to `state`; then re-read the warning signs."""
    effects = Effects()
    fold = _Fold(state, effects)
    fold.apply(event, event_id)
    if effects.applied and state.now is not None:
        _snapshot(state)
        _prune(state)
        if review_signals:
            review(state, thresholds, effects)
    return effects
