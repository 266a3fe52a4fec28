"""Bounces that arrive after the SMTP server accepted a message: delivery status notifications.

A DSN (RFC 3464) names the original Message-ID, which is stable per message, so it leads
back to the message and, through its recipients, to the contact whose address failed.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from notify.channels.dsn import parse_dsn
from notify.models import Message, utcnow
from notify.service.contacts import mark_undeliverable
from notify.service.enqueue import enqueue


@dataclass(frozen=True)
class BounceOutcome:
    recipient: str
    status: str
    message_id: str | None
    contact_id: str | None
    applied: bool
    note: str


async def apply_dsn(session: AsyncSession, raw: bytes) -> list[BounceOutcome]:
    """Apply every permanent failure in the DSN; report what each recipient came to."""
    outcomes: list[BounceOutcome] = []
    now = utcnow()
    for bounce in parse_dsn(raw):
        if not bounce.permanent:
            outcomes.append(
                BounceOutcome(bounce.recipient, bounce.status, None, None, False, "not permanent")
            )
            continue
        message = (
            await session.scalars(
                select(Message)
                .where(col(Message.header_message_id) == bounce.original_message_id)
                .with_for_update()
            )
        ).first()
        if message is None:
            outcomes.append(
                BounceOutcome(
                    bounce.recipient, bounce.status, None, None, False, "message not found"
                )
            )
            continue
        contact_id = next(
            (
                r.get("contact_id")
                for r in message.recipients
                if str(r.get("address", "")).lower() == bounce.recipient.lower()
            ),
            None,
        )
        why = f"bounced {bounce.status}: {bounce.diagnostic or bounce.action}"
        first_time = message.status != "failed"
        await session.execute(
            update(Message)
            .where(col(Message.id) == message.id)
            .values(status="failed", reason=why, updated_at=now)
        )
        if contact_id and first_time:
            await mark_undeliverable(session, message, contact_id, why, now)
        if first_time and message.kind != "alert":
            await enqueue(
                session,
                key=f"alert:bounce:{message.id}:{bounce.recipient.lower()}",
                kind="alert",
                channel="email",
                cause_type="message.bounced",
                cause_id=message.id,
                customer_id=message.customer_id,
                invoice_ids=list(message.invoice_ids),
                data={
                    "title": f"Bounce: {message.kind} not delivered",
                    "detail": f"The {message.kind} to {bounce.recipient} bounced ({why}). "
                    "Check the contact's address.",
                },
            )
        outcomes.append(
            BounceOutcome(
                bounce.recipient,
                bounce.status,
                message.id,
                contact_id,
                first_time,
                "applied" if first_time else "already failed",
            )
        )
    return outcomes
