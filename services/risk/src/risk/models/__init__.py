"""The risk service's tables, plus api_token, the outbox and the inbox on the same metadata."""

from __future__ import annotations

from duewise_events.outbox import Outbox
from duewise_events.tables import inbox_table, outbox_table
from duewise_service.auth import api_token_table

from risk.models.tables import (
    ArMovement,
    CustomerProfile,
    ReminderLog,
    RiskModel,
    RiskSignal,
    WorklistRow,
    utcnow,
)

#: The risk service's own metadata (Alembic's target): never shared with another service.
metadata = RiskModel.metadata
OUTBOX_TABLE = outbox_table(metadata)
INBOX_TABLE = inbox_table(metadata)
API_TOKEN_TABLE = api_token_table(metadata)
#: Where every risk event is staged, in the writing transaction.
OUTBOX = Outbox(OUTBOX_TABLE, source="duewise/risk")
#: The advisory-lock key of this service's relay (one active relay per database).
RELAY_LOCK_KEY = 0x0D0E_3001

__all__ = [
    "API_TOKEN_TABLE",
    "INBOX_TABLE",
    "OUTBOX",
    "OUTBOX_TABLE",
    "RELAY_LOCK_KEY",
    "ArMovement",
    "CustomerProfile",
    "ReminderLog",
    "RiskModel",
    "RiskSignal",
    "WorklistRow",
    "metadata",
    "utcnow",
]
