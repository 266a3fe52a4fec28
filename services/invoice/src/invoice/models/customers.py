"""Customers and their contacts: tables beside their Create / Update / Public schemas."""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, EmailStr, model_validator
from pydantic import Field as PField
from sqlalchemy import BigInteger, Column, DateTime, ForeignKey, Text, func
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel

from invoice.models.common import (
    CountryCode,
    CurrencyCode,
    LocaleTag,
    Money,
    PhoneNumber,
    TimeZoneName,
    new_id,
    utcnow,
)

ContactRole = Literal["billing", "primary", "escalation", "other"]


class InvoicePreferences(BaseModel):
    """How the customer wants its invoices: PO numbers, its own GL code, extra recipients."""

    model_config = ConfigDict(extra="forbid")

    po_required: bool = False
    customer_gl_code: str | None = PField(default=None, max_length=64)
    cc: list[EmailStr] = PField(default_factory=list, max_length=20)


class ContactBase(SQLModel):
    name: str = Field(min_length=1, max_length=200)
    email: EmailStr | None = Field(default=None, max_length=320, sa_type=Text)
    phone: PhoneNumber | None = Field(default=None, sa_type=Text)
    role: ContactRole = Field(default="billing", sa_type=Text)
    undeliverable: bool = False


class ContactCreate(ContactBase):
    model_config = ConfigDict(extra="forbid")  # type: ignore[assignment]

    @model_validator(mode="after")
    def _reachable(self) -> ContactCreate:
        if self.email is None and self.phone is None:
            raise ValueError("a contact needs an email or a phone")
        return self


class Contact(ContactBase, table=True):
    id: str = Field(default_factory=lambda: new_id("con"), primary_key=True)
    customer_id: str = Field(
        sa_column=Column(
            Text, ForeignKey("customer.id", ondelete="CASCADE"), index=True, nullable=False
        )
    )
    position: int = 0


class ContactPublic(ContactBase):
    id: str


class CustomerBase(SQLModel):
    name: str = Field(min_length=1, max_length=300)
    external_id: str | None = Field(default=None, min_length=1, max_length=100, unique=True)
    currency: CurrencyCode = Field(sa_type=Text)
    timezone: TimeZoneName = Field(default="UTC", sa_type=Text)
    country: CountryCode = Field(sa_type=Text)
    locale: LocaleTag = Field(default="en-US", sa_type=Text)
    payment_terms_days: int = Field(default=30, ge=0, le=365)
    credit_limit: Money | None = Field(default=None, sa_type=BigInteger)
    # The collector who works the account (a collector UI user name); alerts go to them.
    owner: str | None = Field(default=None, min_length=1, max_length=100, sa_type=Text, index=True)


class CustomerCreate(CustomerBase):
    model_config = ConfigDict(extra="forbid")  # type: ignore[assignment]

    tags: list[str] = Field(default_factory=list, max_length=50)
    contacts: list[ContactCreate] = Field(default_factory=list, max_length=50)
    invoice_preferences: InvoicePreferences = Field(default_factory=InvoicePreferences)


class CustomerUpdate(SQLModel):
    """PATCH body: only the fields given change; `contacts`, when given, replaces them all."""

    model_config = ConfigDict(extra="forbid")  # type: ignore[assignment]

    name: str | None = Field(default=None, min_length=1, max_length=300)
    external_id: str | None = Field(default=None, min_length=1, max_length=100)
    currency: CurrencyCode | None = None
    timezone: TimeZoneName | None = None
    country: CountryCode | None = None
    locale: LocaleTag | None = None
    payment_terms_days: int | None = Field(default=None, ge=0, le=365)
    credit_limit: Money | None = None
    owner: str | None = Field(default=None, min_length=1, max_length=100)
    tags: list[str] | None = Field(default=None, max_length=50)
    contacts: list[ContactCreate] | None = Field(default=None, max_length=50)
    invoice_preferences: InvoicePreferences | None = None


class Customer(CustomerBase, table=True):
    id: str = Field(default_factory=lambda: new_id("cus"), primary_key=True)
    tags: list[str] = Field(
        default_factory=list, sa_column=Column(JSONB, nullable=False, server_default="[]")
    )
    invoice_preferences: dict[str, Any] = Field(
        default_factory=dict, sa_column=Column(JSONB, nullable=False, server_default="{}")
    )
    created_at: dt.datetime = Field(
        default_factory=utcnow,
        sa_column=Column(DateTime(timezone=True), nullable=False, server_default=func.now()),
    )
    updated_at: dt.datetime = Field(
        default_factory=utcnow,
        sa_column=Column(DateTime(timezone=True), nullable=False, server_default=func.now()),
    )


class CustomerPublic(CustomerBase):
    id: str
    tags: list[str]
    invoice_preferences: InvoicePreferences
    contacts: list[ContactPublic]
    created_at: dt.datetime
    updated_at: dt.datetime

    @classmethod
    def of(cls, customer: Customer, contacts: list[Contact]) -> CustomerPublic:
        """The public view of a customer and its contacts."""
        return cls.model_validate(
            {
                **customer.model_dump(),
                "contacts": [ContactPublic.model_validate(c.model_dump()) for c in contacts],
            }
        )
