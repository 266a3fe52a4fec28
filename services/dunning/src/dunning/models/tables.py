"""The dunning service's tables: projections of invoice.events, policies, schedules, notices."""

from __future__ import annotations

import datetime as dt
from typing import Any

from duewise_service.auth import api_token_table
from duewise_service.columns import (
    NAMING_CONVENTION,
    json_column,
    money_column,
    new_id,
    timestamp_column,
)
from duewise_service.idempotency import idempotency_table
from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Float,
    Identity,
    Index,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import registry
from sqlmodel import Field, SQLModel


class DunningModel(SQLModel, registry=registry()):
    """Base of the dunning tables: their own metadata, apart from any other service's."""


DunningModel.metadata.naming_convention = NAMING_CONVENTION
_ts, _json, _money = timestamp_column, json_column, money_column


# --- bookkeeping ------------------------------------------------------------------------


#: Bearer tokens (SHA-256 of the plaintext) and Idempotency-Key records: duewise_service's
#: tables on this service's metadata.
API_TOKEN_TABLE = api_token_table(DunningModel.metadata)
IDEMPOTENCY_TABLE = idempotency_table(DunningModel.metadata)


class ClockSetting(DunningModel, table=True):
    """The settable clock's offset, shared by the API and the scheduler (never in production)."""

    __tablename__ = "clock_setting"

    id: int = Field(default=1, primary_key=True)
    offset_s: float = Field(default=0.0, sa_type=Float)


# --- projections of invoice.events ------------------------------------------------------


class CustomerProjection(DunningModel, table=True):
    __tablename__ = "customer"

    id: str = Field(primary_key=True)
    name: str = ""
    currency: str = Field(sa_type=Text)
    timezone: str = Field(sa_type=Text)
    country: str = Field(sa_type=Text)
    tags: list[str] = _json(list)
    contact_roles: list[str] = _json(list)
    risk_band: str | None = Field(default=None, sa_type=Text)
    # the collector whose portfolio this is (dunning.portfolio checks collectors' tokens by it)
    owner: str | None = Field(default=None, sa_type=Text)
    updated_at: dt.datetime = _ts()


class InvoiceProjection(DunningModel, table=True):
    __tablename__ = "invoice"

    id: str = Field(primary_key=True)
    customer_id: str = Field(index=True)
    number: str
    kind: str = Field(default="standard", sa_type=Text)
    issue_date: dt.date
    due_date: dt.date
    total: int = _money()
    balance: int = _money()
    currency: str = Field(sa_type=Text)
    status: str = Field(default="open", sa_type=Text)
    disputed: bool = False
    in_transit: int = _money()
    last_payment_date: dt.date | None = None
    updated_at: dt.datetime = _ts()


class HeldEvent(DunningModel, table=True):
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


# --- policies ---------------------------------------------------------------------------


class Policy(DunningModel, table=True):
    __tablename__ = "policy"

    id: str = Field(default_factory=lambda: new_id("pol"), primary_key=True)
    name: str
    version: int = 1
    spec: dict[str, Any] = _json(dict)
    segment_tags: list[str] = _json(list)
    segment_risk_band: str | None = Field(default=None, sa_type=Text)
    segment_min_amount: int | None = _money(None)
    priority: int = 0
    is_default: bool = False
    deleted_at: dt.datetime | None = Field(default=None, sa_type=DateTime(timezone=True))
    created_at: dt.datetime = _ts()
    updated_at: dt.datetime = _ts()


class PolicyAssignment(DunningModel, table=True):
    """A per-customer override of the segment rules."""

    __tablename__ = "policy_assignment"

    customer_id: str = Field(primary_key=True)
    policy_id: str = Field(index=True)
    assigned_by: str
    assigned_at: dt.datetime = _ts()


class AuditLog(DunningModel, table=True):
    __tablename__ = "audit_log"

    id: int | None = Field(
        default=None, sa_column=Column(BigInteger, Identity(always=True), primary_key=True)
    )
    actor: str
    action: str
    entity: str
    entity_id: str = Field(index=True)
    before: Any = Field(default=None, sa_column=Column(JSONB))
    after: Any = Field(default=None, sa_column=Column(JSONB))
    at: dt.datetime = _ts()


# --- schedules --------------------------------------------------------------------------

STEP_STATUSES = ("pending", "claimed", "emitted", "cancelled", "skipped")


class ScheduledStep(DunningModel, table=True):
    """One planned step of one invoice; UNIQUE(invoice_id, step_key) emits it at most once."""

    __tablename__ = "scheduled_step"
    __table_args__ = (
        UniqueConstraint("invoice_id", "step_key"),
        Index(
            "ix_scheduled_step_due",
            "send_at",
            postgresql_where=text("status IN ('pending', 'claimed')"),
        ),
        # the claim's second arm: claimed rows whose lease expired (a dead worker's claim)
        Index(
            "ix_scheduled_step_lease",
            "lease_until",
            postgresql_where=text("status = 'claimed'"),
        ),
    )

    id: int | None = Field(
        default=None, sa_column=Column(BigInteger, Identity(always=True), primary_key=True)
    )
    invoice_id: str
    customer_id: str = Field(index=True)
    step_key: str
    step_index: int
    send_at: dt.datetime = Field(sa_type=DateTime(timezone=True))
    local_date: dt.date
    status: str = Field(default="pending", sa_type=Text)
    lease_until: dt.datetime | None = Field(default=None, sa_type=DateTime(timezone=True))
    claimed_by: str | None = None
    policy_id: str
    policy_version: int
    channel: str = Field(sa_type=Text)
    fee_amount: int = _money()
    interest_amount: int = _money()
    reason: str = Field(default="", sa_type=Text)
    note: str | None = Field(default=None, sa_type=Text, description="why cancelled/skipped")
    notice_id: str | None = None
    emitted_at: dt.datetime | None = Field(default=None, sa_type=DateTime(timezone=True))
    # W3C traceparent of the event that planned the step: its reminder continues that trace
    traceparent: str | None = Field(default=None, sa_type=Text)
    updated_at: dt.datetime = _ts()


class Notice(DunningModel, table=True):
    """One notice per customer per local day and step: the ReminderDue's dedup key."""

    __tablename__ = "notice"
    __table_args__ = (UniqueConstraint("customer_id", "local_date", "step_key"),)

    id: str = Field(default_factory=lambda: new_id("ntc"), primary_key=True)
    customer_id: str
    local_date: dt.date
    step_key: str
    invoice_ids: list[str] = _json(list)
    created_at: dt.datetime = _ts()


class Promise(DunningModel, table=True):
    __tablename__ = "promise"

    id: str = Field(default_factory=lambda: new_id("prm"), primary_key=True)
    customer_id: str = Field(index=True)
    invoice_ids: list[str] = _json(list)
    amount: int = _money()
    paid: int = _money()
    currency: str = Field(sa_type=Text)
    promised_date: dt.date
    status: str = Field(default="open", sa_type=Text)
    created_at: dt.datetime = _ts()
    resolved_at: dt.datetime | None = Field(default=None, sa_type=DateTime(timezone=True))


class Pause(DunningModel, table=True):
    """Dunning stopped for an invoice or a whole customer until `resume_on` (or lifted)."""

    __tablename__ = "pause"

    id: str = Field(default_factory=lambda: new_id("pau"), primary_key=True)
    customer_id: str | None = Field(default=None, index=True)
    invoice_id: str | None = Field(default=None, index=True)
    kind: str = Field(sa_type=Text, description="manual | dispute | promise | in_transit")
    reason: str = Field(sa_type=Text)
    resume_on: dt.date | None = None
    ref: str | None = Field(default=None, description="dispute, promise or payment id")
    created_by: str = "system"
    created_at: dt.datetime = _ts()
    lifted_at: dt.datetime | None = Field(default=None, sa_type=DateTime(timezone=True))


class CustomerStage(DunningModel, table=True):
    __tablename__ = "customer_stage"

    customer_id: str = Field(primary_key=True)
    stage: str = Field(default="current", sa_type=Text)
    on_hold: bool = False
    hold_id: str | None = None
    hold_reason: str | None = Field(default=None, sa_type=Text)
    updated_at: dt.datetime = _ts()
