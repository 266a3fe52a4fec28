"""/v1/customers: create, read, list, patch; balance and aging per customer."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from duewise_service.db import SessionDep
from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse

from invoice import service
from invoice.api.views import PageOut, customer_view
from invoice.auth import CanReadAR, CanWriteCustomers, IdempotencyDep
from invoice.models import CustomerCreate, CustomerPublic, CustomerUpdate

router = APIRouter(prefix="/customers", tags=["customers"])


@router.post("", status_code=201, response_model=CustomerPublic)
async def create_customer(
    data: CustomerCreate, session: SessionDep, idem: IdempotencyDep, _: CanWriteCustomers
) -> JSONResponse:
    """Create a customer with its contacts and invoice preferences."""

    async def write() -> CustomerPublic:
        customer = await service.create_customer(session=session, data=data)
        return await customer_view(session, customer)

    async with session.begin():
        return await idem.run(session, 201, write)


@router.get("", response_model=PageOut[CustomerPublic])
async def list_customers(
    session: SessionDep,
    _: CanReadAR,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: str | None = None,
    external_id: str | None = None,
    tag: str | None = None,
    owner: Annotated[
        str | None, Query(min_length=1, max_length=100, description="the collector's user name")
    ] = None,
) -> PageOut[CustomerPublic]:
    """Customers, oldest first; `owner` keeps one collector's portfolio."""
    async with session.begin():
        page = await service.list_customers(
            session=session,
            limit=limit,
            cursor=cursor,
            external_id=external_id,
            tag=tag,
            owner=owner,
        )
        items = [await customer_view(session, c) for c in page.items]
    return PageOut(items=items, next_cursor=page.next_cursor)


@router.get("/{customer_id}", response_model=CustomerPublic)
async def get_customer(customer_id: str, session: SessionDep, _: CanReadAR) -> CustomerPublic:
    """One customer with its contacts."""
    async with session.begin():
        customer = await service.get_customer(session=session, customer_id=customer_id)
        return await customer_view(session, customer)


@router.patch("/{customer_id}", response_model=CustomerPublic)
async def update_customer(
    customer_id: str,
    data: CustomerUpdate,
    session: SessionDep,
    idem: IdempotencyDep,
    _: CanWriteCustomers,
) -> JSONResponse:
    """Change the fields given; `contacts`, when given, replaces the customer's contacts."""

    async def write() -> CustomerPublic:
        customer = await service.update_customer(
            session=session, customer_id=customer_id, data=data
        )
        return await customer_view(session, customer)

    async with session.begin():
        return await idem.run(session, 200, write)


@router.get("/{customer_id}/balance")
async def customer_balance(
    customer_id: str, session: SessionDep, _: CanReadAR, as_of: dt.date | None = None
) -> dict[str, object]:
    """Open and overdue balance, unapplied credit, invoices by status."""
    async with session.begin():
        return await service.customer_balance(session=session, customer_id=customer_id, as_of=as_of)


@router.get("/{customer_id}/aging")
async def customer_aging(
    customer_id: str, session: SessionDep, _: CanReadAR, as_of: dt.date | None = None
) -> dict[str, object]:
    """The customer's open balance by days past due as of `as_of` (default: its local today)."""
    async with session.begin():
        return await service.aging_report(session=session, as_of=as_of, customer_id=customer_id)
