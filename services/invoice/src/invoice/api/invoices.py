"""/v1/invoices (issue, read, list, void, write-off, credit notes, disputes) and /v1/disputes."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

from duewise_service.db import SessionDep
from fastapi import APIRouter, Body, Query
from fastapi.responses import JSONResponse
from sqlalchemy import select
from sqlmodel import col

from invoice import service
from invoice.api.views import PageOut, invoice_view, invoice_views
from invoice.auth import CanReadAR, CanWriteDisputes, CanWriteInvoices, IdempotencyDep
from invoice.models import (
    CreditNoteCreate,
    CreditNotePublic,
    Dispute,
    DisputeCreate,
    DisputePublic,
    DisputeResolve,
    Invoice,
    InvoiceCreate,
    InvoicePublic,
    VoidRequest,
    WriteOffRequest,
)
from invoice.service.disputes import get_dispute

router = APIRouter(tags=["invoices"])


@router.post("/invoices", status_code=201, response_model=InvoicePublic)
async def issue_invoice(
    data: InvoiceCreate, session: SessionDep, idem: IdempotencyDep, _: CanWriteInvoices
) -> JSONResponse:
    """Issue an invoice (lines or a total; due date defaults from the customer's terms)."""

    async def write() -> InvoicePublic:
        issued = await service.issue_invoice(session=session, data=data)
        return invoice_view(issued.invoice, issued.lines)

    async with session.begin():
        return await idem.run(session, 201, write)


@router.get("/invoices", response_model=PageOut[InvoicePublic])
async def list_invoices(
    session: SessionDep,
    _: CanReadAR,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: str | None = None,
    customer_id: str | None = None,
    status: Annotated[
        str | None, Query(description="one status or several, comma-separated")
    ] = None,
    due_before: dt.date | None = None,
    due_after: dt.date | None = None,
    external_id: str | None = None,
    ids: Annotated[
        list[str] | None,
        Query(
            alias="id",
            description=(
                "repeatable: these invoices only (1-200; unknown ones are absent), in one "
                "page without a cursor - one request for a reminder's last look"
            ),
        ),
    ] = None,
) -> PageOut[InvoicePublic]:
    """Invoices, oldest first, filtered (or the ones named by `id`)."""
    async with session.begin():
        page = await service.list_invoices(
            session=session,
            limit=limit,
            cursor=cursor,
            customer_id=customer_id,
            status=status,
            due_before=due_before,
            due_after=due_after,
            external_id=external_id,
            ids=ids,
        )
        items = await invoice_views(session, page.items)
    return PageOut(items=items, next_cursor=page.next_cursor)


@router.get("/invoices/{invoice_id}", response_model=InvoicePublic)
async def get_invoice(invoice_id: str, session: SessionDep, _: CanReadAR) -> InvoicePublic:
    """One invoice with its lines, balance and status."""
    async with session.begin():
        invoice = await service.get_invoice(session=session, invoice_id=invoice_id)
        return (await invoice_views(session, [invoice]))[0]


@router.post("/invoices/{invoice_id}/void", response_model=InvoicePublic)
async def void_invoice(
    invoice_id: str,
    session: SessionDep,
    idem: IdempotencyDep,
    _: CanWriteInvoices,
    data: Annotated[VoidRequest | None, Body()] = None,
) -> JSONResponse:
    """Void an invoice with no payments allocated (409 otherwise)."""
    reason = data.reason if data else "voided"

    async def write() -> InvoicePublic:
        invoice = await service.void_invoice(session=session, invoice_id=invoice_id, reason=reason)
        return (await invoice_views(session, [invoice]))[0]

    async with session.begin():
        return await idem.run(session, 200, write)


@router.post("/invoices/{invoice_id}/write-off", response_model=InvoicePublic)
async def write_off_invoice(
    invoice_id: str,
    session: SessionDep,
    idem: IdempotencyDep,
    _: CanWriteInvoices,
    data: Annotated[WriteOffRequest | None, Body()] = None,
) -> JSONResponse:
    """Write off the invoice's remaining balance."""
    reason = data.reason if data else "uncollectable"

    async def write() -> InvoicePublic:
        invoice = await service.write_off_invoice(
            session=session, invoice_id=invoice_id, reason=reason
        )
        return (await invoice_views(session, [invoice]))[0]

    async with session.begin():
        return await idem.run(session, 200, write)


@router.post(
    "/invoices/{invoice_id}/credit-notes", status_code=201, response_model=CreditNotePublic
)
async def issue_credit_note(
    invoice_id: str,
    data: CreditNoteCreate,
    session: SessionDep,
    idem: IdempotencyDep,
    _: CanWriteInvoices,
) -> JSONResponse:
    """Credit part or all of an invoice's balance."""

    async def write() -> CreditNotePublic:
        note = await service.issue_credit_note(session=session, invoice_id=invoice_id, data=data)
        return CreditNotePublic.model_validate(note.model_dump())

    async with session.begin():
        return await idem.run(session, 201, write)


@router.post("/invoices/{invoice_id}/disputes", status_code=201, response_model=DisputePublic)
async def open_dispute(
    invoice_id: str,
    data: DisputeCreate,
    session: SessionDep,
    idem: IdempotencyDep,
    _: CanWriteDisputes,
) -> JSONResponse:
    """Open a dispute on an invoice; it becomes `disputed` until resolved."""

    async def write() -> DisputePublic:
        dispute = await service.open_dispute(session=session, invoice_id=invoice_id, data=data)
        return DisputePublic.model_validate(dispute.model_dump())

    async with session.begin():
        return await idem.run(session, 201, write)


@router.get("/disputes", response_model=PageOut[DisputePublic])
async def list_disputes(
    session: SessionDep,
    _: CanReadAR,
    customer_id: str,
    status: Literal["open", "resolved"] | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: str | None = None,
) -> PageOut[DisputePublic]:
    """One customer's disputes, oldest first (found through the customer's invoices index)."""
    async with session.begin():
        of_customer = select(col(Invoice.id)).where(col(Invoice.customer_id) == customer_id)
        q = select(Dispute).where(col(Dispute.invoice_id).in_(of_customer))
        if status is not None:
            q = q.where(col(Dispute.status) == status)
        if cursor:
            q = q.where(col(Dispute.id) > cursor)
        rows = list((await session.scalars(q.order_by(col(Dispute.id)).limit(limit + 1))).all())
    more = len(rows) > limit
    rows = rows[:limit]
    return PageOut(
        items=[DisputePublic.model_validate(d.model_dump()) for d in rows],
        next_cursor=rows[-1].id if more else None,
    )


@router.get("/disputes/{dispute_id}", response_model=DisputePublic)
async def read_dispute(dispute_id: str, session: SessionDep, _: CanReadAR) -> DisputePublic:
    """One dispute."""
    async with session.begin():
        dispute = await get_dispute(session=session, dispute_id=dispute_id)
        return DisputePublic.model_validate(dispute.model_dump())


@router.post("/disputes/{dispute_id}/resolve", response_model=DisputePublic)
async def resolve_dispute(
    dispute_id: str,
    data: DisputeResolve,
    session: SessionDep,
    idem: IdempotencyDep,
    _: CanWriteDisputes,
) -> JSONResponse:
    """Resolve a dispute (optionally with a credit); the invoice's status follows its balance."""

    async def write() -> DisputePublic:
        dispute = await service.resolve_dispute(session=session, dispute_id=dispute_id, data=data)
        return DisputePublic.model_validate(dispute.model_dump())

    async with session.begin():
        return await idem.run(session, 200, write)
