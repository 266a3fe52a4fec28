"""Dispute use cases: open one on an invoice (status disputed), resolve it."""

from __future__ import annotations

from duewise_events.catalogue import DisputeOpened, DisputeResolved
from duewise_service.problems import DomainError, not_found
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from invoice.models import (
    OUTBOX,
    CreditNoteCreate,
    Dispute,
    DisputeCreate,
    DisputeResolve,
    utcnow,
)
from invoice.service.common import lock_customer
from invoice.service.credit_notes import issue_credit_note
from invoice.service.invoices import lock_invoice


async def open_dispute(*, session: AsyncSession, invoice_id: str, data: DisputeCreate) -> Dispute:
    """Open a dispute on an invoice with a balance; the invoice becomes disputed."""
    invoice = await lock_invoice(session, invoice_id)
    if invoice.in_dispute:
        raise DomainError(
            409, "Dispute already open", f"invoice {invoice.id} already has an open dispute"
        )
    if invoice.status not in ("open", "partially_paid"):
        raise DomainError(
            409,
            "Invoice not disputable",
            f"invoice {invoice.id} is {invoice.status}: only an unpaid balance can be disputed",
        )
    dispute = Dispute(
        invoice_id=invoice.id, customer_id=invoice.customer_id, reason=data.reason, note=data.note
    )
    invoice.in_dispute = True
    invoice.refresh_status()
    invoice.updated_at = utcnow()
    session.add_all([dispute, invoice])
    await OUTBOX.add(
        session,
        DisputeOpened(
            customer_id=invoice.customer_id,
            dispute_id=dispute.id,
            invoice_id=invoice.id,
            reason=dispute.reason,
            note=dispute.note,
            opened_at=dispute.opened_at,
        ),
    )
    return dispute


async def resolve_dispute(
    *, session: AsyncSession, dispute_id: str, data: DisputeResolve
) -> Dispute:
    """Resolve an open dispute (optionally crediting the invoice); stage DisputeResolved."""
    customer_id = await session.scalar(
        select(Dispute.customer_id).where(col(Dispute.id) == dispute_id)
    )
    if customer_id is None:
        raise not_found("dispute", dispute_id)
    await lock_customer(session, customer_id=customer_id)
    stmt = (
        select(Dispute)
        .where(col(Dispute.id) == dispute_id)
        .execution_options(populate_existing=True)
    )
    dispute: Dispute = (await session.execute(stmt)).scalar_one()
    if dispute.status != "open":
        raise DomainError(
            409, "Dispute already resolved", f"dispute {dispute.id} is {dispute.status}"
        )
    invoice = await lock_invoice(session, dispute.invoice_id)
    if data.credit_amount:
        await issue_credit_note(
            session=session,
            invoice_id=invoice.id,
            data=CreditNoteCreate(
                amount=data.credit_amount, reason=f"dispute {dispute.id}: {dispute.reason}"
            ),
        )
    now = utcnow()
    dispute.status = "resolved"
    dispute.outcome = data.outcome
    dispute.resolution_note = data.note
    dispute.resolved_at = now
    invoice.in_dispute = False
    invoice.refresh_status()
    invoice.updated_at = now
    session.add_all([dispute, invoice])
    await OUTBOX.add(
        session,
        DisputeResolved(
            customer_id=invoice.customer_id,
            dispute_id=dispute.id,
            invoice_id=invoice.id,
            outcome=data.outcome,
            note=data.note,
            invoice_balance=invoice.balance,
            invoice_status=invoice.status,
            resolved_at=now,
        ),
    )
    return dispute


async def get_dispute(*, session: AsyncSession, dispute_id: str) -> Dispute:
    """The dispute, or a 404."""
    dispute = await session.get(Dispute, dispute_id)
    if dispute is None:
        raise not_found("dispute", dispute_id)
    return dispute
