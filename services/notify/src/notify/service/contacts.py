"""An address that no longer works: the contact is marked, the world is told."""

from __future__ import annotations

import datetime as dt

from duewise_events.catalogue import MessageFailed
from sqlalchemy.ext.asyncio import AsyncSession

from notify.models import OUTBOX, CustomerProjection, Message


async def mark_undeliverable(
    session: AsyncSession, message: Message, contact_id: str, why: str, now: dt.datetime
) -> None:
    """Mark `contact_id` undeliverable here at once and stage `message.failed.v1` saying so.

    The invoice service owns contacts: it hears the event, marks its contact and emits
    `customer.updated.v1`, which confirms the mark back to every service.
    """
    customer = await session.get(CustomerProjection, message.customer_id, with_for_update=True)
    if customer is not None:
        customer.contacts = [
            {**c, "undeliverable": True} if c.get("id") == contact_id else c
            for c in customer.contacts
        ]
    await OUTBOX.add(
        session,
        MessageFailed(
            customer_id=message.customer_id or "",
            message_id=message.id,
            kind=message.kind,
            channel=message.channel,
            reason=why,
            permanent=True,
            contact_id=contact_id,
            contact_undeliverable=True,
            failed_at=now,
        ),
    )
