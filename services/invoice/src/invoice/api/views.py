"""Public views of rows (with their children) and the page envelope every list returns."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Generic, TypeVar

from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession

from invoice.models import (
    Customer,
    CustomerPublic,
    Invoice,
    InvoiceLine,
    InvoiceLinePublic,
    InvoicePublic,
    Payment,
    PaymentPublic,
)
from invoice.service.customers import customer_contacts
from invoice.service.invoice_queries import invoice_lines
from invoice.service.payments import payment_allocations

T = TypeVar("T")


class PageOut(BaseModel, Generic[T]):
    """One page of a list; pass `next_cursor` back as `cursor` for the next (null: last page)."""

    items: list[T]
    next_cursor: str | None


async def customer_view(session: AsyncSession, customer: Customer) -> CustomerPublic:
    return CustomerPublic.of(customer, list(await customer_contacts(session, customer.id)))


async def invoice_views(session: AsyncSession, invoices: Sequence[Invoice]) -> list[InvoicePublic]:
    lines = await invoice_lines(session, [i.id for i in invoices])
    return [invoice_view(inv, lines[inv.id]) for inv in invoices]


def invoice_view(invoice: Invoice, lines: Sequence[InvoiceLine]) -> InvoicePublic:
    """The public view of an invoice whose lines are at hand (a just-issued one's)."""
    return InvoicePublic.model_validate(
        {
            **invoice.model_dump(),
            "lines": [InvoiceLinePublic.model_validate(ln.model_dump()) for ln in lines],
        }
    )


async def payment_views(session: AsyncSession, payments: Sequence[Payment]) -> list[PaymentPublic]:
    allocations = await payment_allocations(session, [p.id for p in payments])
    return [PaymentPublic.of(p, allocations[p.id]) for p in payments]
