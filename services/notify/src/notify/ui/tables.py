"""The collector UI's own tables, on the notify metadata (so one migration history covers them).

The UI owns no AR data: only who may sign in (`ui_user`), who is signed in (`ui_session`),
failed sign-ins for the rate limit (`ui_login_failure`) and what each user did through it
(`ui_action`, the audit log: the request sent to the owning service and its answer).
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    Integer,
    Table,
    Text,
    func,
)
from sqlalchemy.dialects.postgresql import JSONB

from notify.models import metadata


def _now(name: str) -> Column[dt.datetime]:
    return Column(name, DateTime(timezone=True), nullable=False, server_default=func.now())


UI_USER = Table(
    "ui_user",
    metadata,
    Column("user_name", Text, primary_key=True),
    Column("display_name", Text, nullable=False),
    Column("role", Text, nullable=False),
    Column("password_hash", Text, nullable=False),
    # {"invoice": sealed token, "dunning": …}: see notify.ui.sealing for how they are sealed.
    Column("api_tokens", JSONB, nullable=False, server_default="{}"),
    _now("created_at"),
    Column("disabled_at", DateTime(timezone=True)),
    CheckConstraint("role IN ('collector', 'admin')", name="role"),
)

UI_SESSION = Table(
    "ui_session",
    metadata,
    # SHA-256 of the cookie's random id: a leaked table row cannot be replayed as a cookie.
    Column("id_hash", Text, primary_key=True),
    Column(
        "user_name",
        Text,
        ForeignKey("ui_user.user_name", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    Column("csrf_token", Text, nullable=False),
    _now("created_at"),
    _now("last_seen_at"),
)

UI_LOGIN_FAILURE = Table(
    "ui_login_failure",
    metadata,
    Column("id", BigInteger, Identity(always=True), primary_key=True),
    Column("user_name", Text, nullable=False),
    _now("at"),
    Index("ix_ui_login_failure_user_name_at", "user_name", "at"),
)

UI_ACTION = Table(
    "ui_action",
    metadata,
    Column("id", Text, primary_key=True),
    _now("at"),
    Column("user_name", Text, nullable=False),
    #: What the action was about: a customer, or (policy edits) a dunning policy.
    Column("subject_kind", Text, nullable=False, server_default="customer"),
    Column("subject_id", Text, nullable=False),
    #: The customer, for actions on one (null for a policy's): what the customer page reads.
    Column("customer_id", Text, nullable=True, index=True),
    Column("kind", Text, nullable=False),
    Column("service", Text, nullable=False),
    Column("request", JSONB, nullable=False),
    Column("status", Integer, nullable=False),
    Column("result", JSONB),
    CheckConstraint("subject_kind IN ('customer', 'policy')", name="subject_kind"),
    Index("ix_ui_action_subject", "subject_kind", "subject_id"),
)
