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
from sqlalchemy import func
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from notify.models import WAKE_CHANNEL, Message, new_id, utcnow

#: Kinds that go to customers (rate limited, last-looked where they dun).
CUSTOMER_KINDS = frozenset(
    {"invoice", "reminder", "thank_you", "good_standing", "credit_hold", "manual"}
)
#: Kinds a customer may unsubscribe from: the rest are transactional.
OPTIONAL_KINDS = frozenset({"thank_you", "good_standing"})


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
    stmt = (
        insert(Message)
        .values(
            id=new_id("msg"),
            idempotency_key=key,
            customer_id=customer_id,
            kind=kind,
            channel=channel,
            tone=tone,
            cause_type=cause_type,
            cause_id=cause_id,
            step_key=step_key,
            invoice_ids=list(invoice_ids),
            data=data or {},
            target=target,
            recipients=[],
            status="pending",
            attempts=0,
            not_before=not_before or now,
            created_by=created_by,
            created_at=now,
            updated_at=now,
            # the cause's trace (the consumer's span), continued by the sender
            traceparent=current_trace_headers().get("traceparent"),
        )
        .on_conflict_do_nothing(index_elements=[col(Message.idempotency_key)])
        # The sender LISTENs: it hears of the message when (and only if) this commits.
        .returning(col(Message.id), func.pg_notify(WAKE_CHANNEL, ""))
    )
    row = (await session.execute(stmt)).first()
    return None if row is None else str(row[0])
