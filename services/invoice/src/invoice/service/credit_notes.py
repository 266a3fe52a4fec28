"""Credit note use case: reduce an invoice's balance, stage CreditNoteIssued."""

from __future__ import annotations

from duewise_events.catalogue import CreditNoteIssued
from duewise_service.problems import DomainError
from sqlalchemy import func
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from invoice.models import OUTBOX, CreditNote, CreditNoteCreate
from invoice.service.invoices import lock_invoice, refuse_closed, touch


async def issue_credit_note(
    *, session: AsyncSession, invoice_id: str, data: CreditNoteCreate
) -> CreditNote:
    """Reduce an invoice's balance by a credit note; stage CreditNoteIssued."""
    invoice = await lock_invoice(session, invoice_id)
    refuse_closed(invoice, "credit")
    if data.amount > invoice.balance:
        raise DomainError(
            422,
            "Credit exceeds balance",
            f"amount: {data.amount} is more than the invoice's balance {invoice.balance}",
            "amount",
        )
    if data.external_id is not None:
        taken = await session.scalar(
            select(func.count())
            .select_from(CreditNote)
            .where(col(CreditNote.external_id) == data.external_id)
        )
        if taken:
            raise DomainError(
                409,
                "Duplicate external id",
                f"external_id: {data.external_id!r} exists",
                "external_id",
            )
    note = CreditNote(
        invoice_id=invoice.id,
        customer_id=invoice.customer_id,
        currency=invoice.currency,
        **data.model_dump(),
    )
    invoice.credited_amount += data.amount
    invoice.balance -= data.amount
    touch(invoice, session)
    session.add(note)
    await OUTBOX.add(
        session,
        CreditNoteIssued(
            customer_id=invoice.customer_id,
            credit_note_id=note.id,
            invoice_id=invoice.id,
            amount=note.amount,
            currency=note.currency,
            reason=note.reason,
            invoice_balance=invoice.balance,
            invoice_status=invoice.status,
        ),
    )
    return note
