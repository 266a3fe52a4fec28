"""/v1/payments: record (allocated or oldest-first), read, list, reverse."""

from __future__ import annotations

from typing import Annotated

from duewise_service.db import SessionDep
from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse

from invoice import service
from invoice.api.views import PageOut, payment_views
from invoice.auth import CanReadAR, CanWritePayments, IdempotencyDep
from invoice.models import PaymentCreate, PaymentPublic, PaymentReverse

router = APIRouter(prefix="/payments", tags=["payments"])


@router.post("", status_code=201, response_model=PaymentPublic)
async def record_payment(
    data: PaymentCreate, session: SessionDep, idem: IdempotencyDep, _: CanWritePayments
) -> JSONResponse:
    """Record a payment; without `allocations` it pays the oldest due invoices first."""

    async def write() -> PaymentPublic:
        recorded = await service.record_payment(session=session, data=data)
        return PaymentPublic.of(recorded.payment, recorded.allocations)

    async with session.begin():
        return await idem.run(session, 201, write)


@router.get("", response_model=PageOut[PaymentPublic])
async def list_payments(
    session: SessionDep,
    _: CanReadAR,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: str | None = None,
    customer_id: str | None = None,
    invoice_id: str | None = None,
) -> PageOut[PaymentPublic]:
    """Payments, oldest first, filtered."""
    async with session.begin():
        page = await service.list_payments(
            session=session,
            limit=limit,
            cursor=cursor,
            customer_id=customer_id,
            invoice_id=invoice_id,
        )
        items = await payment_views(session, page.items)
    return PageOut(items=items, next_cursor=page.next_cursor)


@router.get("/{payment_id}", response_model=PaymentPublic)
async def get_payment(payment_id: str, session: SessionDep, _: CanReadAR) -> PaymentPublic:
    """One payment with its allocations."""
    async with session.begin():
        payment = await service.get_payment(session=session, payment_id=payment_id)
        return (await payment_views(session, [payment]))[0]


@router.post("/{payment_id}/reverse", response_model=PaymentPublic)
async def reverse_payment(
    payment_id: str,
    data: PaymentReverse,
    session: SessionDep,
    idem: IdempotencyDep,
    _: CanWritePayments,
) -> JSONResponse:
    """Reverse a payment (bounced check, chargeback, ACH return): its invoices reopen."""

    async def write() -> PaymentPublic:
        payment = await service.reverse_payment(session=session, payment_id=payment_id, data=data)
        return (await payment_views(session, [payment]))[0]

    async with session.begin():
        return await idem.run(session, 200, write)
