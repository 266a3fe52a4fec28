"""Putting a message in the delivery log: once per cause, whatever redelivers the cause.

A message is only *recorded* here, in the caller's transaction (the consumer's inbox
transaction, or an API request's). The sender claims and sends it after the commit, so a
rolled-back cause leaves no message, and a redelivered cause finds its key taken.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any

from duewise_events.tracing import current_trace_headers
from sqlalchemy import bindparam, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncSession

from notify.models import WAKE_CHANNEL, new_id, utcnow

#: Kinds that go to customers (rate limited, last-looked where they dun).
CUSTOMER_KINDS = frozenset(
    {"invoice", "reminder", "thank_you", "good_standing", "credit_hold", "manual"}
)
#: Kinds a customer may unsubscribe from: the rest are transactional.
OPTIONAL_KINDS = frozenset({"thank_you", "good_standing"})

# A text statement: the PostgreSQL dialect's insert() (for ON CONFLICT) is never cached by
# SQLAlchemy, so built per message it was compiled again for every one (~1 ms of CPU).
# The sender LISTENs: pg_notify wakes it when (and only if) this commits; asked for in
# RETURNING so that it costs no extra round trip.
_INSERT = text(
    f"""
    INSERT INTO message (id, idempotency_key, customer_id, kind, channel, tone, cause_type,
                         cause_id, step_key, invoice_ids, data, target, recipients, status,
                         attempts, not_before, created_by, created_at, updated_at, traceparent)
    VALUES (:id, :key, :customer_id, :kind, :channel, :tone, :cause_type, :cause_id,
            :step_key, :invoice_ids, :data, :target, '[]', 'pending', 0, :not_before,
            :created_by, :now, :now, :traceparent)
    ON CONFLICT (idempotency_key) DO NOTHING
    RETURNING id, pg_notify('{WAKE_CHANNEL}', '')
    """
).bindparams(bindparam("invoice_ids", type_=JSONB), bindparam("data", type_=JSONB))


async def enqueue(
    session: AsyncSession,
    *,
    key: str,
    kind: str,
    channel: str,
    cause_type: str,
    cause_id: str,
    customer_id: str | None,
    tone: str | None = None,
    step_key: str | None = None,
    invoice_ids: Iterable[str] = (),
    data: dict[str, Any] | None = None,
    target: str | None = None,
    not_before: dt.datetime | None = None,
    created_by: str | None = None,
) -> str | None:
    """Record a message to send under `key`; its id, or None when the key was taken."""
    now = utcnow()
    row = (
        await session.execute(
            _INSERT,
            {
                "id": new_id("msg"),
                "key": key,
                "customer_id": customer_id,
                "kind": kind,
                "channel": channel,
                "tone": tone,
                "cause_type": cause_type,
                "cause_id": cause_id,
                "step_key": step_key,
                "invoice_ids": list(invoice_ids),
                "data": data or {},
                "target": target,
                "not_before": not_before or now,
                "created_by": created_by,
                "now": now,
                # the cause's trace (the consumer's span), continued by the sender
                "traceparent": current_trace_headers().get("traceparent"),
            },
        )
    ).first()
    return None if row is None else str(row[0])
