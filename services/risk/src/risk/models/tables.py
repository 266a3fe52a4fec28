"""The risk service's tables: one profile row per customer, signal episodes, and the two
portfolio logs (balance movements and reminders) the analytics add up."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    ARRAY,
    BigInteger,
    Column,
    Date,
    DateTime,
    Identity,
    Index,
    SmallInteger,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import registry
from sqlmodel import Field, SQLModel


class RiskModel(SQLModel, registry=registry()):
    """Base of the risk tables: their own metadata, apart from any other service's."""


RiskModel.metadata.naming_convention = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _json(default: Any) -> Any:
    server = "[]" if isinstance(default(), list) else "{}"
    return Field(
        default_factory=default, sa_column=Column(JSONB, nullable=False, server_default=server)
    )


class CustomerProfile(RiskModel, table=True):
    """A customer's folded state (the source of truth) and its score.

    `state` is what the next event is applied to. The score is kept in columns for the
    worklist; the profile document is computed from the state when it is read.
    """

    __tablename__ = "customer_profile"
    __table_args__ = (
        Index("ix_customer_profile_worklist", text("score DESC"), "customer_id"),
        Index("ix_customer_profile_band", "band"),
    )

    customer_id: str = Field(primary_key=True)
    known: bool = False
    currency: str | None = None
    state: dict[str, Any] = _json(dict)
    score: int | None = None
    band: str | None = None
    factors: list[dict[str, Any]] = _json(list)
    as_of: dt.datetime | None = Field(
        default=None, sa_column=Column(DateTime(timezone=True), nullable=True)
    )
    updated_at: dt.datetime = Field(
        default_factory=utcnow,
        sa_column=Column(DateTime(timezone=True), nullable=False, server_default=func.now()),
    )


class RiskSignal(RiskModel, table=True):
    """One episode of one signal: open while `cleared_at` is null."""

    __tablename__ = "risk_signal"
    __table_args__ = (
        Index("ix_risk_signal_open", "kind", postgresql_where=text("cleared_at IS NULL")),
    )

    signal_id: str = Field(primary_key=True)
    customer_id: str = Field(index=True)
    kind: str
    positive: bool = False
    severity: str
    summary: str
    recommendation: str | None = None
    evidence: dict[str, Any] = _json(dict)
    raised_at: dt.datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    cleared_at: dt.datetime | None = Field(
        default=None, sa_column=Column(DateTime(timezone=True), nullable=True)
    )
    clear_reason: str | None = None


class ArMovement(RiskModel, table=True):
    """One change of one invoice's balance, dated by the event: the receivables ledger."""

    __tablename__ = "ar_movement"
    __table_args__ = (
        Index("ix_ar_movement_currency_on", "currency", "on"),
        Index("ix_ar_movement_customer_id", "customer_id"),
    )

    id: int | None = Field(
        default=None, sa_column=Column(BigInteger, Identity(always=True), primary_key=True)
    )
    customer_id: str
    invoice_id: str
    currency: str
    on: dt.date = Field(sa_column=Column(Date, nullable=False))
    due: dt.date = Field(sa_column=Column(Date, nullable=False))
    amount: int = Field(sa_type=BigInteger)
    kind: str
    ref: str


class ReminderLog(RiskModel, table=True):
    """A reminder step sent (or due) to a customer, for "which step recovered the money"."""

    __tablename__ = "reminder_log"
    __table_args__ = (Index("ix_reminder_log_customer_id_on", "customer_id", "on"),)

    id: str = Field(primary_key=True)
    customer_id: str
    step_key: str
    on: dt.date = Field(sa_column=Column(Date, nullable=False))
    currency: str | None = None
    invoice_ids: list[str] = Field(
        default_factory=list,
        sa_column=Column(ARRAY(Text), nullable=False, server_default="{}"),
    )
    sent: bool = False


class WorklistRow(RiskModel, table=True):
    """A known customer's line on the collectors' worklist (see risk.domain.worklist),
    written with its profile. The two ordered indexes are the working order, for everyone
    (admins) and for one owner's portfolio (a collector)."""

    __tablename__ = "worklist_row"
    __table_args__ = (
        Index("ix_worklist_row_order", "pushed_down", "band_rank", "overdue_rank", "customer_id"),
        Index(
            "ix_worklist_row_owner_order",
            "owner",
            "pushed_down",
            "band_rank",
            "overdue_rank",
            "customer_id",
        ),
    )

    customer_id: str = Field(primary_key=True)
    name: str
    owner: str | None = None
    currency: str | None = None
    band: str | None = None
    score: int | None = None
    open_amount: int = Field(default=0, sa_type=BigInteger)
    overdue: int = Field(default=0, sa_type=BigInteger)
    oldest_overdue_days: int = 0
    broken_promises: int = 0
    open_disputes: int = 0
    promise_pending: bool = False
    stage: str | None = None
    on_hold: bool = False
    pushed_down: bool = False
    band_rank: int = Field(default=4, sa_type=SmallInteger)
    overdue_rank: int = Field(default=0, sa_type=BigInteger)
    as_of: dt.datetime | None = Field(
        default=None, sa_column=Column(DateTime(timezone=True), nullable=True)
    )
    updated_at: dt.datetime = Field(
        default_factory=utcnow,
        sa_column=Column(DateTime(timezone=True), nullable=False, server_default=func.now()),
    )
