"""Logging what a customer said: through a reply link, or told to a collector."""

from __future__ import annotations

from typing import get_args

from duewise_events.catalogue import ResponseLogged, ResponseReason
from duewise_service.problems import DomainError
from sqlalchemy.ext.asyncio import AsyncSession

from notify.models import OUTBOX, CustomerProjection, CustomerResponse, utcnow

REASONS: tuple[str, ...] = get_args(ResponseReason)


async def log_response(
    session: AsyncSession,
    *,
    customer_id: str,
    reason: str,
    source: str,
    note: str | None = None,
    logged_by: str | None = None,
    message_id: str | None = None,
    invoice_ids: list[str] | None = None,
) -> CustomerResponse:
    """Record the response and stage `response.logged.v1` (risk counts them into trends)."""
    if reason not in REASONS:
        raise DomainError(422, "Invalid reason", f"reason: one of {list(REASONS)}", "reason")
    if await session.get(CustomerProjection, customer_id) is None:
        raise DomainError(
            422, "Unknown customer", f"customer_id: {customer_id} is not known", "customer_id"
        )
    row = CustomerResponse(
        customer_id=customer_id,
        reason=reason,
        note=note,
        source=source,
        logged_by=logged_by,
        message_id=message_id,
        invoice_ids=list(invoice_ids or []),
        logged_at=utcnow(),
    )
    session.add(row)
    await session.flush()
    await OUTBOX.add(
        session,
        ResponseLogged(
            customer_id=customer_id,
            response_id=row.id,
            reason=reason,
            note=note,
            source=source,
            logged_by=logged_by,
            message_id=message_id,
            invoice_ids=row.invoice_ids,
            logged_at=row.logged_at,
        ),
    )
    return row
