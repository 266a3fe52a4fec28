"""The data a template sees: frozen views of the customer, its invoices and the message."""

from __future__ import annotations

from datetime import date
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationInfo, field_validator

Kind = Literal[
    "invoice", "reminder", "thank_you", "good_standing", "credit_hold", "alert", "manual"
]
Tone = Literal["friendly", "neutral", "firm", "final"]
Channel = Literal["email", "sms"]

KINDS: tuple[Kind, ...] = (
    "invoice",
    "reminder",
    "thank_you",
    "good_standing",
    "credit_hold",
    "alert",
    "manual",
)
TONES: tuple[Tone, ...] = ("friendly", "neutral", "firm", "final")
CHANNELS: tuple[Channel, ...] = ("email", "sms")

#: Reply reasons a reminder offers, in the order they are shown.
REPLY_REASONS: tuple[str, ...] = ("already_paid", "not_received", "dispute", "cash_flow")


class _View(BaseModel):
    model_config = ConfigDict(frozen=True)


class LineView(_View):
    """One invoice line; money in minor units of the invoice's currency."""

    description: str
    quantity: int
    unit_price: int
    amount: int
    gl_code: str | None = None


class InvoiceView(_View):
    """An invoice as a message shows it; `days_overdue` < 0 means due in that many days."""

    id: str
    number: str
    issue_date: date
    due_date: date
    currency: str
    total: int
    balance: int
    po_number: str | None = None
    gl_code: str | None = None
    lines: list[LineView] = []
    days_overdue: int = 0
    fee_amount: int = 0

    @field_validator("lines", mode="before")
    @classmethod
    def _none_is_empty(cls, v: Any) -> Any:
        return [] if v is None else v


class CustomerView(_View):
    """The customer a message is about, with its language, time zone and reference codes."""

    id: str
    name: str
    locale: str = "en-US"
    timezone: str = "UTC"
    currency: str
    customer_gl_code: str | None = None
    po_required: bool = False


class MessageContext(_View):
    """Everything one message needs; `extra` carries the kind-specific fields.

    `total_balance` is the sum of the invoices' balances without fees; templates show
    `total_balance + total_fees` as the amount to pay. None for a list or dict means empty.

    extra by kind: alert {title, detail, customer_url}; good_standing {streak};
    manual {subject, body}; credit_hold {overdue_balance, reason}; thank_you {early}.
    """

    kind: Kind
    tone: Tone | None = None
    channel: Channel = "email"
    customer: CustomerView
    recipient_name: str | None = None
    invoices: list[InvoiceView] = []
    currency: str
    total_balance: int = 0
    total_fees: int = 0
    reply_urls: dict[str, str] = {}
    unsubscribe_url: str | None = None
    company_name: str = "duewise"
    extra: dict[str, Any] = {}

    @field_validator("invoices", "reply_urls", "extra", mode="before")
    @classmethod
    def _none_is_empty(cls, v: Any, info: ValidationInfo) -> Any:
        if v is None:
            return [] if info.field_name == "invoices" else {}
        return v
