"""The notify service's tables: projections it needs to address and word messages, the
messages themselves (the delivery log), responses, webhook endpoints and opt-outs."""

from __future__ import annotations

import datetime as dt
from typing import Any

from duewise_service.columns import (
    NAMING_CONVENTION,
    json_column,
    money_column,
    new_id,
    timestamp_column,
)
from sqlalchemy import BigInteger, Column, DateTime, Identity, Index, Text, text
from sqlalchemy.orm import registry
from sqlmodel import Field, SQLModel


class NotifyModel(SQLModel, registry=registry()):
    """Base of the notify tables: their own metadata, apart from any other service's."""


NotifyModel.metadata.naming_convention = NAMING_CONVENTION
_ts, _json, _money = timestamp_column, json_column, money_column


# --- projections of invoice.events -------------------------------------------------------


class CustomerProjection(NotifyModel, table=True):
    """Who the customer is, who to write to and how: kept from customer.* events."""

    __tablename__ = "customer"

    id: str = Field(primary_key=True)
    name: str = ""
    currency: str = Field(sa_type=Text)
    timezone: str = Field(default="UTC", sa_type=Text)
    country: str = Field(default="", sa_type=Text)
    locale: str = Field(default="en-US", sa_type=Text)
    owner: str | None = Field(default=None, sa_type=Text)
    contacts: list[dict[str, Any]] = _json(list)
    invoice_preferences: dict[str, Any] = _json(dict)
    # Consecutive invoices paid in full by their due date (a late one resets it).
    on_time_streak: int = 0
    good_standing_since: dt.date | None = None
    updated_at: dt.datetime = _ts()


class InvoiceProjection(NotifyModel, table=True):
    """An invoice as the customer sees it: for the invoice email, its PDF and reminders."""

    __tablename__ = "invoice"

    id: str = Field(primary_key=True)
    customer_id: str = Field(index=True)
    number: str
    kind: str = Field(default="standard", sa_type=Text)
    issue_date: dt.date
    due_date: dt.date
    currency: str = Field(sa_type=Text)
    total: int = _money()
    balance: int = _money()
    status: str = Field(default="open", sa_type=Text)
    po_number: str | None = None
    gl_code: str | None = None
    lines: list[dict[str, Any]] = _json(list)
    imported: bool = False
    updated_at: dt.datetime = _ts()


class HeldEvent(NotifyModel, table=True):
    """An event about a customer or invoice not seen yet: kept, re-applied when it arrives."""

    __tablename__ = "held_event"

    id: int | None = Field(
        default=None, sa_column=Column(BigInteger, Identity(always=True), primary_key=True)
    )
    waiting_for: str = Field(index=True, description="customer:<id> or invoice:<id>")
    event_id: str
    type: str
    payload: dict[str, Any] = _json(dict)
    received_at: dt.datetime = _ts()


# --- messages: the delivery log ----------------------------------------------------------

#: pending → sending → sent | failed | skipped | suppressed; `sending` back to `pending` on a
#: transient failure (with `not_before`), or when its worker died and the lease ran out.
MESSAGE_STATUSES = ("pending", "sending", "sent", "failed", "skipped", "suppressed")


class Message(NotifyModel, table=True):
    """One message to send, sent or not sent, with its cause and what happened to it."""

    __tablename__ = "message"
    __table_args__ = (
        # The sender's two kinds of work, each found through a small partial index.
        Index(
            "ix_message_due",
            "not_before",
            postgresql_where=text("status = 'pending'"),
        ),
        Index(
            "ix_message_lease",
            "lease_until",
            postgresql_where=text("status = 'sending'"),
        ),
        Index("ix_message_customer_created", "customer_id", "created_at"),
    )

    id: str = Field(default_factory=lambda: new_id("msg"), primary_key=True)
    # Derived from the cause (event id, notice id, step): a redelivered cause finds it taken.
    idempotency_key: str = Field(unique=True)
    customer_id: str | None = Field(default=None, sa_type=Text)
    kind: str = Field(sa_type=Text)
    channel: str = Field(sa_type=Text)
    tone: str | None = Field(default=None, sa_type=Text)
    cause_type: str = Field(sa_type=Text)
    cause_id: str = Field(sa_type=Text)
    step_key: str | None = Field(default=None, sa_type=Text)
    invoice_ids: list[str] = _json(list)
    # What the message is about beyond the projections (reminder lines, alert text, manual
    # subject and body, the webhook's event): the renderer's inputs, kept for the log.
    data: dict[str, Any] = _json(dict)
    # For channel `webhook`: the endpoint; for alerts, the collector's address (if known).
    target: str | None = Field(default=None, sa_type=Text)
    recipients: list[dict[str, Any]] = _json(list)
    subject: str | None = None
    body_text: str | None = None
    body_html: str | None = None
    header_message_id: str | None = Field(default=None, sa_type=Text)
    status: str = Field(default="pending", sa_type=Text)
    reason: str | None = None
    attempts: int = 0
    not_before: dt.datetime = _ts()
    lease_until: dt.datetime | None = Field(default=None, sa_type=DateTime(timezone=True))
    provider_response: str | None = None
    # W3C traceparent of the cause: the send and its SMTP call continue that trace
    traceparent: str | None = Field(default=None, sa_type=Text)
    created_by: str | None = None
    created_at: dt.datetime = _ts()
    sent_at: dt.datetime | None = Field(default=None, sa_type=DateTime(timezone=True))
    updated_at: dt.datetime = _ts()


class DeliveryAttempt(NotifyModel, table=True):
    """One try at sending a message: when, the outcome, and what the channel answered."""

    __tablename__ = "delivery_attempt"

    id: int | None = Field(
        default=None, sa_column=Column(BigInteger, Identity(always=True), primary_key=True)
    )
    message_id: str = Field(index=True)
    attempt: int
    outcome: str = Field(sa_type=Text)  # sent | transient | permanent | skipped | suppressed
    response: str | None = None
    at: dt.datetime = _ts()


# --- responses, webhooks, opt-outs -------------------------------------------------------


class CustomerResponse(NotifyModel, table=True):
    """What a customer said, through a reply link or to a collector, with a reason code."""

    __tablename__ = "customer_response"

    id: str = Field(default_factory=lambda: new_id("rsp"), primary_key=True)
    customer_id: str = Field(index=True)
    reason: str = Field(sa_type=Text)
    note: str | None = None
    source: str = Field(sa_type=Text)
    logged_by: str | None = None
    message_id: str | None = Field(default=None, sa_type=Text)
    invoice_ids: list[str] = _json(list)
    logged_at: dt.datetime = _ts()


class WebhookEndpoint(NotifyModel, table=True):
    """An internal system that wants duewise's events, signed per Standard Webhooks."""

    __tablename__ = "webhook_endpoint"

    id: str = Field(default_factory=lambda: new_id("whe"), primary_key=True)
    url: str
    description: str | None = None
    secret: str
    event_types: list[str] = _json(list)  # empty: every type
    enabled: bool = True
    disabled_reason: str | None = None
    created_at: dt.datetime = _ts()
    updated_at: dt.datetime = _ts()


class OptOut(NotifyModel, table=True):
    """A contact who unsubscribed from optional messages (thank-yous, good standing).

    Invoices, reminders and credit-hold notices are transactional: they are still sent.
    """

    __tablename__ = "opt_out"

    contact_id: str = Field(primary_key=True)
    customer_id: str = Field(index=True)
    at: dt.datetime = _ts()
