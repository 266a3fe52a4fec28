"""The dunning service's tables and schemas, plus the outbox and inbox on the same metadata."""

from __future__ import annotations

from duewise_events.outbox import Outbox
from duewise_events.tables import inbox_table, outbox_table
from duewise_service.columns import new_id, utcnow

from dunning.models.tables import (
    API_TOKEN_TABLE,
    IDEMPOTENCY_TABLE,
    STEP_STATUSES,
    AuditLog,
    ClockSetting,
    CustomerProjection,
    CustomerStage,
    DunningModel,
    HeldEvent,
    InvoiceProjection,
    Notice,
    Pause,
    Policy,
    PolicyAssignment,
    Promise,
    ScheduledStep,
)

#: The dunning service's own metadata (Alembic's target): never shared with another service.
metadata = DunningModel.metadata
OUTBOX_TABLE = outbox_table(metadata)
INBOX_TABLE = inbox_table(metadata)
#: Where every dunning event is staged, in the writing transaction.
OUTBOX = Outbox(OUTBOX_TABLE, source="duewise/dunning")
#: The advisory-lock key of this service's relay (one active relay per database).
RELAY_LOCK_KEY = 0x0D0E_2001

__all__ = [
    "API_TOKEN_TABLE",
    "IDEMPOTENCY_TABLE",
    "INBOX_TABLE",
    "OUTBOX",
    "OUTBOX_TABLE",
    "RELAY_LOCK_KEY",
    "STEP_STATUSES",
    "AuditLog",
    "ClockSetting",
    "CustomerProjection",
    "CustomerStage",
    "DunningModel",
    "HeldEvent",
    "InvoiceProjection",
    "Notice",
    "Pause",
    "Policy",
    "PolicyAssignment",
    "Promise",
    "ScheduledStep",
    "metadata",
    "new_id",
    "utcnow",
]
