"""GET /v1/customers/{id}/overview: everything a collector's customer page reads from the
invoice service, in one call and one transaction (a consistent snapshot): the customer with
its contacts, balance, aging, invoices, payments and disputes. The lists are the first page
of each (`next_cursor` says when there is more: follow the list endpoints for the rest)."""

from __future__ import annotations

from typing import Any

from duewise_service.db import SessionDep
from fastapi import APIRouter
from sqlalchemy import select
from sqlmodel import col

from invoice import service
from invoice.api.views import PageOut, customer_view, invoice_views, payment_views
from invoice.auth import CanReadAR
from invoice.models import Dispute, DisputePublic, Invoice, InvoicePublic, PaymentPublic

router = APIRouter(prefix="/customers", tags=["customers"])
#: Items of each list in the overview (the list endpoints' largest page).
LIST_LIMIT = 200


@router.get("/{customer_id}/overview")
async def customer_overview(customer_id: str, session: SessionDep, _: CanReadAR) -> dict[str, Any]:
    """The customer, its balance and aging, and the first page of its invoices, payments and
    disputes (oldest first)."""
    async with session.begin():
        customer = await service.get_customer(session=session, customer_id=customer_id)
        view = await customer_view(session, customer)
        balance = await service.customer_balance(
            session=session, customer_id=customer_id, as_of=None
        )
        aging = await service.aging_report(session=session, as_of=None, customer_id=customer_id)
        invoices = await service.list_invoices(
            session=session, limit=LIST_LIMIT, customer_id=customer_id
        )
        payments = await service.list_payments(
            session=session, limit=LIST_LIMIT, customer_id=customer_id
        )
        of_customer = select(col(Invoice.id)).where(col(Invoice.customer_id) == customer_id)
        disputes = (
            await session.scalars(
                select(Dispute)
                .where(col(Dispute.invoice_id).in_(of_customer))
                .order_by(col(Dispute.id))
                .limit(LIST_LIMIT + 1)
            )
        ).all()
        invoice_page = PageOut[InvoicePublic](
            items=await invoice_views(session, invoices.items), next_cursor=invoices.next_cursor
        )
        payment_page = PageOut[PaymentPublic](
            items=await payment_views(session, payments.items), next_cursor=payments.next_cursor
        )
    dispute_page = PageOut[DisputePublic](
        items=[DisputePublic.model_validate(d.model_dump()) for d in disputes[:LIST_LIMIT]],
        next_cursor=disputes[LIST_LIMIT - 1].id if len(disputes) > LIST_LIMIT else None,
    )
    return {
        "customer": view.model_dump(mode="json"),
        "balance": balance,
        "aging": aging,
        "invoices": invoice_page.model_dump(mode="json"),
        "payments": payment_page.model_dump(mode="json"),
        "disputes": dispute_page.model_dump(mode="json"),
    }
