"""Invoices, their lines, credit notes and disputes: tables beside their schemas."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

from annotated_types import Ge
from pydantic import ConfigDict, Strict, ValidationInfo, field_validator, model_validator
from sqlalchemy import BigInteger, Column, DateTime, ForeignKey, Index, Text, UniqueConstraint, func
from sqlmodel import Field, SQLModel

from invoice.models.common import CurrencyCode, Money, PositiveMoney, new_id, utcnow

InvoiceStatus = Literal["open", "partially_paid", "paid", "void", "written_off", "disputed"]
InvoiceKind = Literal["standard", "fee"]
#: Statuses that still carry a collectable balance.
OPEN_STATUSES: tuple[InvoiceStatus, ...] = ("open", "partially_paid", "disputed")


def _created_at() -> dt.datetime:
    return Field(  # type: ignore[no-any-return]
        default_factory=utcnow,
        sa_column=Column(DateTime(timezone=True), nullable=False, server_default=func.now()),
    )


class InvoiceLineBase(SQLModel):
    description: str = Field(min_length=1, max_length=500)
    quantity: Annotated[int, Strict(), Ge(1)] = 1
    unit_price: Money = Field(sa_type=BigInteger)
    gl_code: str | None = Field(default=None, max_length=64)


class InvoiceLineCreate(InvoiceLineBase):
    model_config = ConfigDict(extra="forbid")  # type: ignore[assignment]


class InvoiceLine(InvoiceLineBase, table=True):
    __tablename__ = "invoice_line"

    id: str = Field(default_factory=lambda: new_id("lin"), primary_key=True)
    invoice_id: str = Field(
        sa_column=Column(
            Text, ForeignKey("invoice.id", ondelete="CASCADE"), index=True, nullable=False
        )
    )
    position: int = 0
    amount: int = Field(sa_type=BigInteger)


class InvoiceLinePublic(InvoiceLineBase):
    amount: int


class InvoiceBase(SQLModel):
    number: str = Field(min_length=1, max_length=100)
    external_id: str | None = Field(default=None, min_length=1, max_length=100)
    issue_date: dt.date
    currency: CurrencyCode = Field(sa_type=Text)
    po_number: str | None = Field(default=None, max_length=100)
    gl_code: str | None = Field(default=None, max_length=64)
    kind: InvoiceKind = Field(default="standard", sa_type=Text)


class InvoiceCreate(InvoiceBase):
    """Give `customer_id` or `customer_external_id`; `lines` or `total` (or both, if they agree)."""

    model_config = ConfigDict(extra="forbid")  # type: ignore[assignment]

    customer_id: str | None = None
    customer_external_id: str | None = None
    due_date: dt.date | None = None
    total: Money | None = None
    lines: list[InvoiceLineCreate] = Field(default_factory=list, max_length=1000)

    @model_validator(mode="after")
    def _consistent(self) -> InvoiceCreate:
        if self.customer_id is None and self.customer_external_id is None:
            raise ValueError("give customer_id or customer_external_id")
        if not self.lines and self.total is None:
            raise ValueError("give lines or a total")
        return self

    @field_validator("due_date")
    @classmethod
    def _due_after_issue(cls, v: dt.date | None, info: ValidationInfo) -> dt.date | None:
        issued = info.data.get("issue_date")
        if v is not None and isinstance(issued, dt.date) and v < issued:
            raise ValueError(f"due_date {v} is before issue_date {issued}")
        return v


class Invoice(InvoiceBase, table=True):
    __table_args__ = (
        UniqueConstraint("customer_id", "number"),
        UniqueConstraint("external_id"),
        Index("ix_invoice_customer_id_status_due_date", "customer_id", "status", "due_date"),
    )

    id: str = Field(default_factory=lambda: new_id("inv"), primary_key=True)
    customer_id: str = Field(sa_column=Column(Text, ForeignKey("customer.id"), nullable=False))
    due_date: dt.date = Field(index=True)
    total: int = Field(sa_type=BigInteger)
    balance: int = Field(sa_type=BigInteger)
    status: str = Field(default="open", sa_type=Text)
    in_dispute: bool = False
    credited_amount: int = Field(default=0, sa_type=BigInteger)
    written_off_amount: int = Field(default=0, sa_type=BigInteger)
    written_off_at: dt.datetime | None = Field(default=None, sa_type=DateTime(timezone=True))
    write_off_reason: str | None = None
    voided_at: dt.datetime | None = Field(default=None, sa_type=DateTime(timezone=True))
    void_reason: str | None = None
    created_at: dt.datetime = _created_at()
    updated_at: dt.datetime = _created_at()

    def refresh_status(self) -> None:
        """Derive `status` from the balance and the void / write-off / dispute facts."""
        self.status = derive_status(
            voided=self.voided_at is not None,
            written_off=self.written_off_at is not None,
            in_dispute=self.in_dispute,
            balance=self.balance,
            billed=self.total - self.credited_amount,
        )


def derive_status(
    *, voided: bool, written_off: bool, in_dispute: bool, balance: int, billed: int
) -> InvoiceStatus:
    """An invoice's status from its facts; `billed` is its total less what was credited."""
    if voided:
        return "void"
    if written_off:
        return "written_off"
    if in_dispute:
        return "disputed"
    if balance == 0:
        return "paid"
    if balance < billed:
        return "partially_paid"
    return "open"


class InvoicePublic(InvoiceBase):
    id: str
    customer_id: str
    due_date: dt.date
    total: int
    balance: int
    status: InvoiceStatus
    credited_amount: int
    written_off_amount: int
    voided_at: dt.datetime | None
    written_off_at: dt.datetime | None
    created_at: dt.datetime
    lines: list[InvoiceLinePublic] = []


class VoidRequest(SQLModel):
    model_config = ConfigDict(extra="forbid")  # type: ignore[assignment]

    reason: str = Field(default="voided", min_length=1, max_length=500)


class WriteOffRequest(VoidRequest):
    reason: str = Field(default="uncollectable", min_length=1, max_length=500)


class CreditNoteBase(SQLModel):
    amount: PositiveMoney = Field(sa_type=BigInteger)
    reason: str = Field(min_length=1, max_length=500)
    external_id: str | None = Field(default=None, min_length=1, max_length=100, unique=True)


class CreditNoteCreate(CreditNoteBase):
    model_config = ConfigDict(extra="forbid")  # type: ignore[assignment]


class CreditNote(CreditNoteBase, table=True):
    __tablename__ = "credit_note"

    id: str = Field(default_factory=lambda: new_id("crn"), primary_key=True)
    invoice_id: str = Field(
        sa_column=Column(Text, ForeignKey("invoice.id"), index=True, nullable=False)
    )
    customer_id: str = Field(sa_column=Column(Text, ForeignKey("customer.id"), nullable=False))
    currency: str
    created_at: dt.datetime = _created_at()


class CreditNotePublic(CreditNoteBase):
    id: str
    invoice_id: str
    customer_id: str
    currency: str
    created_at: dt.datetime


DisputeOutcome = Literal["customer_right", "customer_wrong", "settled"]


class DisputeCreate(SQLModel):
    model_config = ConfigDict(extra="forbid")  # type: ignore[assignment]

    reason: str = Field(min_length=1, max_length=200)
    note: str | None = Field(default=None, max_length=2000)


class DisputeResolve(SQLModel):
    """`credit_amount` > 0 issues a credit note for it in the same transaction."""

    model_config = ConfigDict(extra="forbid")  # type: ignore[assignment]

    outcome: DisputeOutcome
    note: str | None = Field(default=None, max_length=2000)
    credit_amount: PositiveMoney | None = None


class Dispute(SQLModel, table=True):
    id: str = Field(default_factory=lambda: new_id("dsp"), primary_key=True)
    invoice_id: str = Field(
        sa_column=Column(Text, ForeignKey("invoice.id"), index=True, nullable=False)
    )
    customer_id: str = Field(sa_column=Column(Text, ForeignKey("customer.id"), nullable=False))
    reason: str
    note: str | None = None
    status: str = Field(default="open", sa_type=Text)
    outcome: str | None = None
    resolution_note: str | None = None
    opened_at: dt.datetime = _created_at()
    resolved_at: dt.datetime | None = Field(default=None, sa_type=DateTime(timezone=True))


class DisputePublic(SQLModel):
    id: str
    invoice_id: str
    customer_id: str
    reason: str
    note: str | None
    status: Literal["open", "resolved"]
    outcome: DisputeOutcome | None
    resolution_note: str | None
    opened_at: dt.datetime
    resolved_at: dt.datetime | None
