"""Payments and their allocations to invoices: tables beside their schemas."""

from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import ConfigDict, model_validator
from sqlalchemy import BigInteger, Column, DateTime, ForeignKey, Text, func
from sqlmodel import Field, SQLModel

from invoice.models.common import CurrencyCode, PositiveMoney, new_id, utcnow

PaymentMethod = Literal["check", "ach", "card", "wire", "cash", "sepa", "other"]
ReversalReason = Literal["bounced_check", "chargeback", "ach_return", "other"]


class AllocationCreate(SQLModel):
    model_config = ConfigDict(extra="forbid")  # type: ignore[assignment]

    invoice_id: str
    amount: PositiveMoney


class Allocation(SQLModel, table=True):
    id: str = Field(default_factory=lambda: new_id("alc"), primary_key=True)
    payment_id: str = Field(
        sa_column=Column(Text, ForeignKey("payment.id"), index=True, nullable=False)
    )
    invoice_id: str = Field(
        sa_column=Column(Text, ForeignKey("invoice.id"), index=True, nullable=False)
    )
    amount: int = Field(sa_type=BigInteger)
    position: int = 0


class AllocationPublic(SQLModel):
    invoice_id: str
    amount: int


class PaymentBase(SQLModel):
    amount: PositiveMoney = Field(sa_type=BigInteger)
    currency: CurrencyCode = Field(sa_type=Text)
    method: PaymentMethod = Field(sa_type=Text)
    received_at: dt.date
    reference: str | None = Field(default=None, max_length=200)
    external_id: str | None = Field(default=None, min_length=1, max_length=100, unique=True)
    in_transit: bool = False


class PaymentCreate(PaymentBase):
    """Give `customer_id` or `customer_external_id`; without `allocations`, oldest due first."""

    model_config = ConfigDict(extra="forbid")  # type: ignore[assignment]

    customer_id: str | None = None
    customer_external_id: str | None = None
    allocations: list[AllocationCreate] | None = Field(default=None, max_length=1000)

    @model_validator(mode="after")
    def _customer_given(self) -> PaymentCreate:
        if self.customer_id is None and self.customer_external_id is None:
            raise ValueError("give customer_id or customer_external_id")
        return self


class Payment(PaymentBase, table=True):
    id: str = Field(default_factory=lambda: new_id("pay"), primary_key=True)
    customer_id: str = Field(
        sa_column=Column(Text, ForeignKey("customer.id"), index=True, nullable=False)
    )
    unallocated: int = Field(sa_type=BigInteger)
    reversed_at: dt.datetime | None = Field(default=None, sa_type=DateTime(timezone=True))
    reversal_reason: str | None = None
    reversal_note: str | None = None
    created_at: dt.datetime = Field(
        default_factory=utcnow,
        sa_column=Column(DateTime(timezone=True), nullable=False, server_default=func.now()),
    )


class PaymentPublic(PaymentBase):
    id: str
    customer_id: str
    unallocated: int
    status: Literal["received", "reversed"]
    reversed_at: dt.datetime | None
    reversal_reason: str | None
    allocations: list[AllocationPublic]
    created_at: dt.datetime

    @classmethod
    def of(cls, payment: Payment, allocations: list[Allocation]) -> PaymentPublic:
        """The public view of a payment and its allocations."""
        return cls.model_validate(
            {
                **payment.model_dump(),
                "status": "reversed" if payment.reversed_at else "received",
                "allocations": [
                    {"invoice_id": a.invoice_id, "amount": a.amount} for a in allocations
                ],
            }
        )


class PaymentReverse(SQLModel):
    model_config = ConfigDict(extra="forbid")  # type: ignore[assignment]

    reason: ReversalReason
    note: str | None = Field(default=None, max_length=2000)
