"""The notify service's tables, plus the outbox, inbox, tokens and idempotency keys on the
same metadata (its own: never shared with another service)."""

from __future__ import annotations

from duewise_events.outbox import Outbox
from duewise_events.tables import inbox_table, outbox_table
from duewise_service.auth import api_token_table
from duewise_service.columns import new_id, utcnow
from duewise_service.idempotency import idempotency_table

from notify.models.tables import (
    MESSAGE_STATUSES,
    CustomerProjection,
    CustomerResponse,
    DeliveryAttempt,
    HeldEvent,
    InvoiceProjection,
    Message,
    NotifyModel,
    OptOut,
    WebhookEndpoint,
)

metadata = NotifyModel.metadata
OUTBOX_TABLE = outbox_table(metadata)
INBOX_TABLE = inbox_table(metadata)
API_TOKEN_TABLE = api_token_table(metadata)
IDEMPOTENCY_TABLE = idempotency_table(metadata)
#: Where every notify event is staged, in the writing transaction.
OUTBOX = Outbox(OUTBOX_TABLE, source="duewise/notify")
#: The advisory-lock key of this service's relay (one active relay per database).
RELAY_LOCK_KEY = 0x0D0E_4001
#: The channel the sender LISTENs on: a new message wakes it at once.
WAKE_CHANNEL = "notify_message"

__all__ = [
    "API_TOKEN_TABLE",
    "IDEMPOTENCY_TABLE",
    "INBOX_TABLE",
    "MESSAGE_STATUSES",
    "OUTBOX",
    "OUTBOX_TABLE",
    "RELAY_LOCK_KEY",
    "WAKE_CHANNEL",
    "CustomerProjection",
    "CustomerResponse",
    "DeliveryAttempt",
    "HeldEvent",
    "InvoiceProjection",
    "Message",
    "NotifyModel",
    "OptOut",
    "WebhookEndpoint",
    "metadata",
    "new_id",
    "utcnow",
]
