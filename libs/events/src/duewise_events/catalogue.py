"""The event catalogue: every fact duewise publishes, as a small frozen pydantic class.

A type is versioned in its name (`invoice.issued.v1`). A compatible change (a new optional
field) keeps the name; a breaking one gets a new class with a new name. Consumers ignore
fields they do not know, so producers can add fields without breaking them.

Every event carries `customer_id`: it is the Kafka key, so everything about one customer is
seen in order by every consumer. `asyncapi.yaml` beside this package is generated from this
module (`duewise-catalogue`), and a test fails when the two differ.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

INVOICE_EVENTS = "invoice.events"
DUNNING_EVENTS = "dunning.events"
RISK_EVENTS = "risk.events"
NOTIFY_EVENTS = "notify.events"

#: Money is an integer count of the currency's minor units (cents, yen, fils), never a float.
Money = Annotated[int, Field(strict=True, ge=0, description="Amount in minor units")]
Currency = Annotated[str, Field(pattern=r"^[A-Z]{3}$", description="ISO 4217 code")]

InvoiceStatus = Literal["open", "partially_paid", "paid", "void", "written_off", "disputed"]
PaymentMethod = Literal["check", "ach", "card", "wire", "cash", "sepa", "other"]


class Event(BaseModel):
    """Base of every event: the body of one CloudEvent; `TYPE`, `TOPIC` say where it goes."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    TYPE: ClassVar[str]
    TOPIC: ClassVar[str]
    #: One sentence for the catalogue: when this event is emitted.
    SUMMARY: ClassVar[str]

    customer_id: str = Field(description="duewise customer id; also the Kafka record key")

    @property
    def key(self) -> str:
        return self.customer_id


class _Snapshot(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


class ContactSnapshot(_Snapshot):
    id: str
    name: str
    email: str | None = None
    phone: str | None = None
    role: str
    undeliverable: bool = False


class InvoicePreferencesSnapshot(_Snapshot):
    po_required: bool = False
    customer_gl_code: str | None = None
    cc: list[str] = Field(default_factory=list)


class CustomerCreated(Event):
    TYPE = "customer.created.v1"
    TOPIC = INVOICE_EVENTS
    SUMMARY = "A customer was created (over HTTP or by bulk import)."

    external_id: str | None = None
    name: str
    currency: Currency
    timezone: str
    country: str
    locale: str
    payment_terms_days: int
    credit_limit: Money | None = None
    owner: str | None = Field(
        default=None, description="user name of the collector who owns the account"
    )
    tags: list[str] = Field(default_factory=list)
    contacts: list[ContactSnapshot] = Field(default_factory=list)
    invoice_preferences: InvoicePreferencesSnapshot = Field(
        default_factory=InvoicePreferencesSnapshot
    )


class CustomerUpdated(CustomerCreated):
    TYPE = "customer.updated.v1"
    TOPIC = INVOICE_EVENTS
    SUMMARY = "A customer's details or contacts changed; the body is the full new snapshot."

    changed: list[str] = Field(default_factory=list, description="names of the fields changed")


class InvoiceLineSnapshot(_Snapshot):
    description: str
    quantity: int
    unit_price: Money
    amount: Money
    gl_code: str | None = None


class InvoiceIssued(Event):
    TYPE = "invoice.issued.v1"
    TOPIC = INVOICE_EVENTS
    SUMMARY = "An invoice was issued to a customer and is now owed."

    invoice_id: str
    number: str
    external_id: str | None = None
    issue_date: dt.date
    due_date: dt.date
    currency: Currency
    total: Money
    balance: Money
    po_number: str | None = None
    gl_code: str | None = None
    kind: Literal["standard", "fee"] = "standard"
    lines: list[InvoiceLineSnapshot] = Field(default_factory=list)
    imported: bool = Field(
        default=False,
        description="loaded from another system's history by bulk import: not delivered again",
    )


class InvoiceVoided(Event):
    TYPE = "invoice.voided.v1"
    TOPIC = INVOICE_EVENTS
    SUMMARY = "An invoice was voided: nothing is owed on it any more and nothing may be sent."

    invoice_id: str
    reason: str
    voided_at: dt.datetime


class InvoiceWrittenOff(Event):
    TYPE = "invoice.written_off.v1"
    TOPIC = INVOICE_EVENTS
    SUMMARY = "The remaining balance of an invoice was written off as uncollectable."

    invoice_id: str
    amount: Money
    currency: Currency
    reason: str
    written_off_at: dt.datetime


class CreditNoteIssued(Event):
    TYPE = "credit_note.issued.v1"
    TOPIC = INVOICE_EVENTS
    SUMMARY = "A credit note reduced an invoice's balance."

    credit_note_id: str
    invoice_id: str
    amount: Money
    currency: Currency
    reason: str
    invoice_balance: Money
    invoice_status: InvoiceStatus


class AllocationSnapshot(_Snapshot):
    invoice_id: str
    amount: Money
    invoice_balance: Money = Field(description="the invoice's balance after this allocation")
    invoice_status: InvoiceStatus
    due_date: dt.date


class PaymentReceived(Event):
    TYPE = "payment.received.v1"
    TOPIC = INVOICE_EVENTS
    SUMMARY = "A payment was recorded and allocated to invoices; any remainder is customer credit."

    payment_id: str
    amount: Money
    currency: Currency
    method: PaymentMethod
    received_at: dt.date
    reference: str | None = None
    allocations: list[AllocationSnapshot] = Field(default_factory=list)
    unallocated: Money = 0
    in_transit: bool = Field(
        default=False, description="reported (ACH/SEPA) but not yet settled: hold reminders"
    )
    imported: bool = Field(
        default=False,
        description="loaded from another system's history by bulk import: nobody is thanked",
    )


class PaymentReversed(Event):
    TYPE = "payment.reversed.v1"
    TOPIC = INVOICE_EVENTS
    SUMMARY = "A payment was reversed (bounced check, chargeback, returned ACH); balances reopen."

    payment_id: str
    amount: Money
    currency: Currency
    method: PaymentMethod
    reason: str
    allocations: list[AllocationSnapshot] = Field(
        default_factory=list, description="the allocations undone, with each invoice's new balance"
    )
    reversed_at: dt.datetime


class DisputeOpened(Event):
    TYPE = "dispute.opened.v1"
    TOPIC = INVOICE_EVENTS
    SUMMARY = "A customer disputed an invoice; reminders for it must pause."

    dispute_id: str
    invoice_id: str
    reason: str
    note: str | None = None
    opened_at: dt.datetime


class DisputeResolved(Event):
    TYPE = "dispute.resolved.v1"
    TOPIC = INVOICE_EVENTS
    SUMMARY = "A dispute was closed; the invoice's balance and status say what is still owed."

    dispute_id: str
    invoice_id: str
    outcome: Literal["customer_right", "customer_wrong", "settled"]
    note: str | None = None
    invoice_balance: Money
    invoice_status: InvoiceStatus
    resolved_at: dt.datetime


Channel = Literal["email", "sms", "webhook", "task"]
Tone = Literal["friendly", "neutral", "firm", "final"]
DunningStage = Literal["current", "reminded", "final_notice", "credit_hold"]


class ReminderInvoice(_Snapshot):
    invoice_id: str
    number: str
    due_date: dt.date
    balance: Money
    currency: Currency
    days_overdue: int = Field(description="negative before the due date")
    fee_amount: Money = 0


class ReminderDue(Event):
    TYPE = "reminder.due.v1"
    TOPIC = DUNNING_EVENTS
    SUMMARY = (
        "A reminder step fell due: one notice per customer per day, listing every invoice it "
        "covers. Notify sends it (or, for channel `task`, raises a task for a collector)."
    )

    notice_id: str = Field(description="unique per (customer, local date, step); dedup key")
    step_key: str
    step_index: int
    channel: Channel
    template: str
    tone: Tone
    local_date: dt.date = Field(description="the day it is due in the customer's time zone")
    send_at: dt.datetime
    recipient_roles: list[str] = Field(default_factory=lambda: ["billing"])
    invoices: list[ReminderInvoice]
    currency: Currency
    total_balance: Money
    total_fees: Money = 0
    policy_id: str
    policy_version: int


class FeeAssessed(Event):
    TYPE = "fee.assessed.v1"
    TOPIC = DUNNING_EVENTS
    SUMMARY = (
        "A late fee or interest was assessed; the invoice service turns it into a fee invoice."
    )

    fee_id: str = Field(description="unique per (invoice, step, kind); the fee invoice's key")
    invoice_id: str
    kind: Literal["late_fee", "interest"]
    amount: Money
    currency: Currency
    step_key: str
    reason: str = Field(description="the rule and the inputs, in one sentence")
    assessed_on: dt.date


class PromiseKept(Event):
    TYPE = "promise.kept.v1"
    TOPIC = DUNNING_EVENTS
    SUMMARY = "Payment covering a promise to pay arrived by the promised date."

    promise_id: str
    invoice_ids: list[str]
    amount: Money
    currency: Currency
    promised_date: dt.date
    kept_on: dt.date


class PromiseBroken(Event):
    TYPE = "promise.broken.v1"
    TOPIC = DUNNING_EVENTS
    SUMMARY = "The promised date passed without the promised payment; dunning resumes."

    promise_id: str
    invoice_ids: list[str]
    amount: Money
    paid: Money = Field(description="what arrived towards the promise by the date")
    currency: Currency
    promised_date: dt.date


class DunningStageChanged(Event):
    TYPE = "dunning.stage_changed.v1"
    TOPIC = DUNNING_EVENTS
    SUMMARY = "A customer's dunning stage changed (current, reminded, final notice, credit hold)."

    from_stage: DunningStage
    to_stage: DunningStage
    reason: str
    changed_at: dt.datetime


class CreditHoldPlaced(Event):
    TYPE = "credit_hold.placed.v1"
    TOPIC = DUNNING_EVENTS
    SUMMARY = "A customer was put on credit hold: other systems should stop new orders or service."

    hold_id: str
    reason: str
    automatic: bool
    overdue_balance: Money
    currency: Currency
    placed_at: dt.datetime
    notify_customer: bool = Field(
        default=True, description="whether the customer is sent a credit-hold notice"
    )


class CreditHoldReleased(Event):
    TYPE = "credit_hold.released.v1"
    TOPIC = DUNNING_EVENTS
    SUMMARY = "A credit hold was lifted (overdue balance cleared, or by a person with a reason)."

    hold_id: str
    reason: str
    automatic: bool
    released_at: dt.datetime


# --- risk.events --------------------------------------------------------------------------

RiskBand = Literal["low", "medium", "high", "critical"]
SignalKind = Literal[
    "growing_balance",
    "payment_method_switch",
    "slowing_payment",
    "broken_promises",
    "reversed_payment",
    "credit_limit_exceeded",
    "partial_payments",
    "repeated_disputes",
    "contact_problem",
    "steady_early_payment",
]


class RiskSignalRaised(Event):
    TYPE = "risk.signal_raised.v1"
    TOPIC = RISK_EVENTS
    SUMMARY = (
        "A warning sign (or a positive one) began for a customer: raised once per episode, "
        "with its evidence."
    )

    signal_id: str = Field(description="unique per episode; the cleared event repeats it")
    kind: SignalKind
    positive: bool = Field(default=False, description="a good sign (steady early payment)")
    severity: Literal["info", "warning", "critical"] = "warning"
    summary: str = Field(description="one sentence a collector can read")
    recommendation: str | None = None
    evidence: dict[str, Any] = Field(default_factory=dict)
    raised_at: dt.datetime


class RiskSignalCleared(Event):
    TYPE = "risk.signal_cleared.v1"
    TOPIC = RISK_EVENTS
    SUMMARY = "The condition behind a raised signal ended."

    signal_id: str
    kind: SignalKind
    reason: str
    cleared_at: dt.datetime


class ScoreFactor(_Snapshot):
    name: str
    points: int
    explanation: str = Field(description="one sentence: why these points")
    evidence: dict[str, Any] = Field(default_factory=dict)


class RiskScoreChanged(Event):
    TYPE = "risk.score_changed.v1"
    TOPIC = RISK_EVENTS
    SUMMARY = "A customer's risk band changed; the factors add up to the score."

    score: int = Field(ge=0, le=100)
    band: RiskBand
    previous_score: int | None = None
    previous_band: RiskBand | None = None
    factors: list[ScoreFactor]
    changed_at: dt.datetime


# --- notify.events ------------------------------------------------------------------------

MessageKind = Literal[
    "invoice", "reminder", "thank_you", "good_standing", "credit_hold", "alert", "manual", "webhook"
]
ResponseReason = Literal[
    "forgot",
    "not_received",
    "wrong_contact",
    "dispute",
    "cash_flow",
    "promise",
    "refuses",
    "already_paid",
    "other",
]


class MessageSent(Event):
    TYPE = "message.sent.v1"
    TOPIC = NOTIFY_EVENTS
    SUMMARY = "A message was accepted by its channel (SMTP server, SMS provider, webhook)."

    message_id: str
    kind: MessageKind
    channel: Channel
    cause_type: str = Field(description="the event type or action that caused the message")
    cause_id: str
    contact_ids: list[str] = Field(
        default_factory=list, description="who it went to (ids, never addresses)"
    )
    invoice_ids: list[str] = Field(default_factory=list)
    step_key: str | None = None
    sent_at: dt.datetime


class MessageFailed(Event):
    TYPE = "message.failed.v1"
    TOPIC = NOTIFY_EVENTS
    SUMMARY = (
        "A message could not be delivered (bounce, refused recipient, template or address "
        "problem); a contact may now be undeliverable."
    )

    message_id: str
    kind: MessageKind
    channel: Channel
    reason: str
    permanent: bool = True
    contact_id: str | None = None
    contact_undeliverable: bool = Field(
        default=False, description="the contact's address for this channel no longer works"
    )
    failed_at: dt.datetime


class CustomerGoodStanding(Event):
    TYPE = "customer.good_standing.v1"
    TOPIC = NOTIFY_EVENTS
    SUMMARY = (
        "A customer paid its last invoices on time in a row: other systems can use it for "
        "priority or pricing."
    )

    on_time_streak: int
    reached_on: dt.date


class ResponseLogged(Event):
    TYPE = "response.logged.v1"
    TOPIC = NOTIFY_EVENTS
    SUMMARY = (
        "A customer's response was logged, through a reply link or by a collector, with a "
        "reason code."
    )

    response_id: str
    reason: ResponseReason
    note: str | None = None
    source: Literal["reply_link", "collector"]
    logged_by: str | None = Field(default=None, description="the collector, if one logged it")
    message_id: str | None = None
    invoice_ids: list[str] = Field(default_factory=list)
    logged_at: dt.datetime


#: The table of contents: every event class, in the order the catalogue lists them.
CATALOGUE: tuple[type[Event], ...] = (
    CustomerCreated,
    CustomerUpdated,
    InvoiceIssued,
    InvoiceVoided,
    InvoiceWrittenOff,
    CreditNoteIssued,
    PaymentReceived,
    PaymentReversed,
    DisputeOpened,
    DisputeResolved,
    ReminderDue,
    FeeAssessed,
    PromiseKept,
    PromiseBroken,
    DunningStageChanged,
    CreditHoldPlaced,
    CreditHoldReleased,
    RiskSignalRaised,
    RiskSignalCleared,
    RiskScoreChanged,
    MessageSent,
    MessageFailed,
    CustomerGoodStanding,
    ResponseLogged,
)

BY_TYPE: dict[str, type[Event]] = {cls.TYPE: cls for cls in CATALOGUE}

TOPICS: dict[str, str] = {
    INVOICE_EVENTS: "Facts about customers, invoices, payments, credit notes and disputes.",
    DUNNING_EVENTS: "What dunning decided: reminders due, fees, promises, stages and credit holds.",
    RISK_EVENTS: "Warning signs raised and cleared, and risk score changes, with evidence.",
    NOTIFY_EVENTS: "Messages sent and failed, customers in good standing, responses logged.",
}


def dead_letter_topic(topic: str) -> str:
    """Where a consumer of `topic` parks what it cannot process."""
    return f"{topic}.dlt"
