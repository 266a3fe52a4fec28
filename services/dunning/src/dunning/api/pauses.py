"""/v1/promises and /v1/pauses: record and list promises to pay; stop, list and lift pauses."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from duewise_service.db import SessionDep
from duewise_service.problems import DomainError, not_found
from fastapi import APIRouter, Query, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, model_validator
from sqlalchemy import Date, cast, func, literal, or_
from sqlalchemy.sql.elements import ColumnElement
from sqlmodel import col, select

from dunning.api.customers import known_customer
from dunning.auth import CanActOnCustomers, CanReadAR, IdempotencyDep
from dunning.clock import clock
from dunning.handlers import local_today
from dunning.models import CustomerProjection, InvoiceProjection, Pause, Promise
from dunning.service.schedule import recompute

router = APIRouter(tags=["promises and pauses"])

Limit = Annotated[int, Query(ge=1, le=200)]


class PromiseIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    customer_id: str
    invoice_ids: list[str] = Field(min_length=1)
    amount: int = Field(gt=0, strict=True)
    promised_date: dt.date


class PromiseOut(BaseModel):
    id: str
    customer_id: str
    invoice_ids: list[str]
    amount: int
    paid: int
    currency: str
    promised_date: dt.date
    status: str = Field(description="open | kept | broken")
    created_at: dt.datetime
    resolved_at: dt.datetime | None


class PromisePage(BaseModel):
    items: list[PromiseOut]
    next_cursor: str | None


@router.post("/promises", status_code=201, response_model=PromiseOut)
async def create_promise(
    data: PromiseIn, session: SessionDep, idem: IdempotencyDep, who: CanActOnCustomers
) -> JSONResponse:
    """Record a promise to pay: its invoices pause until the promised date."""

    async def write() -> PromiseOut:
        customer = await known_customer(session, data.customer_id)
        if data.promised_date < local_today(customer, clock.now()):
            raise DomainError(
                422,
                "Promise in the past",
                "promised_date: must not be in the past",
                "promised_date",
            )
        for i, invoice_id in enumerate(data.invoice_ids):
            invoice = await session.get(InvoiceProjection, invoice_id)
            if invoice is None or invoice.customer_id != data.customer_id:
                raise DomainError(
                    422,
                    "Unknown invoice",
                    f"invoice_ids/{i}: no invoice {invoice_id!r} of this customer",
                    f"invoice_ids/{i}",
                )
        promise = Promise(
            customer_id=data.customer_id,
            invoice_ids=data.invoice_ids,
            amount=data.amount,
            currency=customer.currency,
            promised_date=data.promised_date,
        )
        session.add(promise)
        for invoice_id in data.invoice_ids:
            session.add(
                Pause(
                    invoice_id=invoice_id,
                    kind="promise",
                    reason=f"promise to pay {data.amount} by {data.promised_date}",
                    resume_on=data.promised_date + dt.timedelta(days=1),
                    ref=promise.id,
                    created_by=who.name,
                )
            )
        await session.flush()
        return PromiseOut.model_validate(promise, from_attributes=True)

    async with session.begin():
        return await idem.run(session, 201, write)


@router.get("/promises", response_model=PromisePage)
async def list_promises(
    session: SessionDep,
    _: CanReadAR,
    customer_id: str | None = None,
    status: Literal["open", "kept", "broken"] | None = None,
    limit: Limit = 50,
    cursor: str | None = None,
) -> PromisePage:
    """Promises to pay, oldest first; by customer and status when given."""
    stmt = select(Promise).order_by(col(Promise.id))
    if customer_id is not None:
        stmt = stmt.where(col(Promise.customer_id) == customer_id)
    if status is not None:
        stmt = stmt.where(col(Promise.status) == status)
    if cursor:
        stmt = stmt.where(col(Promise.id) > cursor)
    async with session.begin():
        rows = (await session.scalars(stmt.limit(limit + 1))).all()
    items = [PromiseOut.model_validate(r, from_attributes=True) for r in rows[:limit]]
    return PromisePage(items=items, next_cursor=rows[limit - 1].id if len(rows) > limit else None)


class PauseIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    customer_id: str | None = None
    invoice_id: str | None = None
    reason: str = Field(min_length=1, max_length=500)
    resume_on: dt.date | None = None

    @model_validator(mode="after")
    def _one_target(self) -> PauseIn:
        if (self.customer_id is None) == (self.invoice_id is None):
            raise ValueError("give exactly one of customer_id or invoice_id")
        return self


class PauseOut(BaseModel):
    id: str
    customer_id: str | None = Field(description="set for a pause of a whole customer")
    invoice_id: str | None = Field(description="set for a pause of one invoice")
    kind: str = Field(description="manual | dispute | promise | in_transit")
    reason: str
    resume_on: dt.date | None = Field(description="dunning resumes on this local date")
    ref: str | None = Field(default=None, description="the dispute, promise or payment id")
    created_by: str = "system"
    created_at: dt.datetime | None = None
    lifted_at: dt.datetime | None


class ListedPause(PauseOut):
    of_customer: str | None = Field(
        description="the customer paused, or the customer of the invoice paused"
    )
    active: bool = Field(
        description="in force today in the customer's time zone: not lifted, not yet resumed"
    )


class PausePage(BaseModel):
    items: list[ListedPause]
    next_cursor: str | None


@router.post("/pauses", status_code=201, response_model=PauseOut)
async def create_pause(
    data: PauseIn, session: SessionDep, idem: IdempotencyDep, who: CanActOnCustomers
) -> JSONResponse:
    """A manual stop for a customer or an invoice, with a reason and an optional resume date."""

    async def write() -> PauseOut:
        if data.invoice_id and await session.get(InvoiceProjection, data.invoice_id) is None:
            raise DomainError(422, "Unknown invoice", "invoice_id: no such invoice", "invoice_id")
        if data.customer_id:
            await known_customer(session, data.customer_id)
        pause = Pause(**data.model_dump(), kind="manual", created_by=who.name)
        session.add(pause)
        await session.flush()
        return PauseOut.model_validate(pause, from_attributes=True)

    async with session.begin():
        return await idem.run(session, 201, write)


@router.get("/pauses", response_model=PausePage)
async def list_pauses(
    session: SessionDep,
    _: CanReadAR,
    customer_id: str | None = None,
    active: bool | None = None,
    limit: Limit = 50,
    cursor: str | None = None,
) -> PausePage:
    """Pauses oldest first: of a customer (the whole customer or one of its invoices) when
    `customer_id` is given; `active` keeps those in force (true) or over (false) today."""
    of_customer = func.coalesce(col(Pause.customer_id), col(InvoiceProjection.customer_id))
    # "Today" in the customer's zone, by the settable clock (UTC when the customer is unknown).
    zone = func.coalesce(col(CustomerProjection.timezone), literal("UTC"))
    today = cast(func.timezone(zone, literal(clock.now())), Date)
    in_force: ColumnElement[bool] = col(Pause.lifted_at).is_(None) & or_(
        col(Pause.resume_on).is_(None), col(Pause.resume_on) > today
    )
    stmt = (
        select(Pause, of_customer.label("of_customer"), in_force.label("active"))
        .outerjoin(InvoiceProjection, col(InvoiceProjection.id) == col(Pause.invoice_id))
        .outerjoin(CustomerProjection, col(CustomerProjection.id) == of_customer)
        .order_by(col(Pause.id))
    )
    if customer_id is not None:
        invoices = select(InvoiceProjection.id).where(
            col(InvoiceProjection.customer_id) == customer_id
        )
        stmt = stmt.where(
            or_(col(Pause.customer_id) == customer_id, col(Pause.invoice_id).in_(invoices))
        )
    if active is not None:
        stmt = stmt.where(in_force if active else ~in_force)
    if cursor:
        stmt = stmt.where(col(Pause.id) > cursor)
    async with session.begin():
        rows = (await session.execute(stmt.limit(limit + 1))).all()
    items = [_listed(pause, of, on) for pause, of, on in rows[:limit]]
    return PausePage(items=items, next_cursor=rows[limit - 1][0].id if len(rows) > limit else None)


def _listed(pause: Pause, of_customer: str | None, active: Any) -> ListedPause:
    base = PauseOut.model_validate(pause, from_attributes=True)
    return ListedPause(**base.model_dump(), of_customer=of_customer, active=bool(active))


@router.delete("/pauses/{pause_id}", status_code=204)
async def lift_pause(pause_id: str, session: SessionDep, _: CanActOnCustomers) -> Response:
    """Lift a pause now; the paused invoices' steps are recomputed."""
    async with session.begin():
        pause = await session.get(Pause, pause_id, with_for_update=True)
        if pause is None:
            raise not_found("pause", pause_id)
        now = clock.now()
        if pause.lifted_at is None:
            pause.lifted_at = now
        if pause.invoice_id:
            await recompute(session, pause.invoice_id, now)
    return Response(status_code=204)
