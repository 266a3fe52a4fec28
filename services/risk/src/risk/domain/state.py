"""One customer's payment history as the risk service keeps it: JSON-native, so it is stored
as one JSONB value per customer and folded in memory by the rebuild without a translation.

Dates are proleptic ordinals (`date.toordinal()`): arithmetic on days is plain subtraction and
the JSON stays small. Only what the profile, the signals and the score read is kept, and old
history is pruned (`HISTORY_DAYS`), so a state stays a few kilobytes however long a customer
has been paying.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field, fields
from typing import Any, TypedDict

#: 12 months of baseline before the last 90 days, plus slack: older history is dropped.
HISTORY_DAYS = 460
#: The last payments whose method is remembered however old they are (the usual method).
METHOD_MEMORY = 60


class InvoiceRec(TypedDict):
    currency: str
    issued: int
    due: int
    total: int
    balance: int
    status: str
    closed: int | None  # the day a payment brought the balance to zero
    reminders: int  # reminders that listed it while it was open
    reminders_at_close: int | None


class AllocRec(TypedDict):
    invoice: str
    amount: int
    days_to_pay: int
    days_late: int


class PaymentRec(TypedDict):
    id: str
    on: int
    method: str
    amount: int
    currency: str
    partial: bool  # left at least one invoice with a balance
    reversed: bool
    allocs: list[AllocRec]


class ReversalRec(TypedDict):
    on: int
    payment: str
    amount: int
    currency: str
    method: str
    reason: str


class OpenSignal(TypedDict):
    id: str
    raised_at: str


class HeldRec(TypedDict):
    waiting_for: str  # "customer" or "invoice:<id>"
    event_id: str
    type: str
    payload: dict[str, Any]


@dataclass
class CustomerState:
    customer_id: str
    known: bool = False
    name: str | None = None
    currency: str | None = None
    credit_limit: int | None = None
    #: the latest instant any applied event speaks of (ISO): the service's "now" for this
    #: customer, so a replay computes exactly what the live path did
    now: str | None = None
    #: `now`'s day as an ordinal (0 before any dated event): read on every step, so kept
    day: int = 0
    invoices: dict[str, InvoiceRec] = field(default_factory=dict)
    payments: list[PaymentRec] = field(default_factory=list)
    #: [on, method] of the last METHOD_MEMORY payments, oldest first
    methods: list[list[Any]] = field(default_factory=list)
    #: [method, first_on, last_on, payments]: the whole history of methods, run-length coded
    method_runs: list[list[Any]] = field(default_factory=list)
    reversals: list[ReversalRec] = field(default_factory=list)
    promises_kept: list[int] = field(default_factory=list)
    promises_broken: list[int] = field(default_factory=list)
    promises_made: int = 0
    disputes_opened: list[int] = field(default_factory=list)
    open_disputes: list[str] = field(default_factory=list)
    dispute_outcomes: dict[str, int] = field(default_factory=dict)
    #: [on, outcome] of resolved disputes within the history window
    disputes_resolved: list[list[Any]] = field(default_factory=list)
    #: [on, reason] of responses within the window; counts are for all time
    responses: list[list[Any]] = field(default_factory=list)
    response_counts: dict[str, int] = field(default_factory=dict)
    undeliverable: list[int] = field(default_factory=list)
    contacts_changed_on: int | None = None
    reminders: list[int] = field(default_factory=list)
    reminders_total: int = 0
    #: currency -> {period (ordinal // 30): [open, overdue]} as last seen in that period
    snapshots: dict[str, dict[str, list[int]]] = field(default_factory=dict)
    open_signals: dict[str, OpenSignal] = field(default_factory=dict)
    episodes: dict[str, int] = field(default_factory=dict)
    held: list[HeldRec] = field(default_factory=list)
    #: the 30-day period old history was last pruned in
    pruned_period: int = 0
    score: int | None = None
    band: str | None = None
    #: the collector who owns the account (customer.created/updated), for the worklist
    owner: str | None = None
    #: dunning's stage for the customer and whether it is on credit hold, as last heard
    stage: str | None = None
    on_hold: bool = False

    def to_json(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CustomerState:
        return cls(**data)

    @property
    def instant(self) -> dt.datetime | None:
        return dt.datetime.fromisoformat(self.now) if self.now else None

    @property
    def today(self) -> int:
        """Today as an ordinal, from the events (0 before any dated event)."""
        return self.day


def day(ordinal: int) -> dt.date:
    return dt.date.fromordinal(ordinal)


def iso_day(ordinal: int | None) -> str | None:
    return None if ordinal is None else dt.date.fromordinal(ordinal).isoformat()
