"""Per-customer actions: policy override, credit hold, stage; promises and pauses."""

from __future__ import annotations

import datetime as dt

from duewise_service.db import SessionDep
from duewise_service.problems import DomainError, not_found
from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, model_validator

from dunning.auth import CanActOnCustomers, CanReadAR, CanWritePolicies, IdempotencyDep
from dunning.clock import clock
from dunning.handlers import local_today
from dunning.models import CustomerProjection, CustomerStage, InvoiceProjection, Pause, Promise
from dunning.service import holds
from dunning.service.policies import assign_policy
from dunning.service.schedule import recompute

router = APIRouter(tags=["customers"])


class AssignIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    policy_id: str | None


@router.put("/customers/{customer_id}/policy")
async def put_policy(
    customer_id: str, data: AssignIn, session: SessionDep, who: CanWritePolicies
) -> dict[str, str | None]:
    """Override the segment rules for one customer (null removes the override)."""
    async with session.begin():
        await assign_policy(
            session=session,
            customer_id=customer_id,
            policy_id=data.policy_id,
            actor=who.name,
            now=clock.now(),
        )
    return {"customer_id": customer_id, "policy_id": data.policy_id}


class StageOut(BaseModel):
    customer_id: str
    stage: str
    on_hold: bool
    hold_id: str | None
    hold_reason: str | None
    updated_at: dt.datetime


class ReasonIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field(min_length=1, max_length=500)


async def _customer(session: SessionDep, customer_id: str) -> CustomerProjection:
    customer = await session.get(CustomerProjection, customer_id)
    if customer is None:
        raise not_found("customer", customer_id)
    return customer


@router.get("/customers/{customer_id}/stage", response_model=StageOut)
async def get_stage(customer_id: str, session: SessionDep, _: CanReadAR) -> StageOut:
    async with session.begin():
        await _customer(session, customer_id)
        row = await session.get(CustomerStage, customer_id) or CustomerStage(
            customer_id=customer_id
        )
        return StageOut.model_validate(row, from_attributes=True)


@router.post("/customers/{customer_id}/credit-hold", response_model=StageOut)
async def place_hold(
    customer_id: str,
    data: ReasonIn,
    session: SessionDep,
    idem: IdempotencyDep,
    _: CanActOnCustomers,
) -> JSONResponse:
    async def write() -> StageOut:
        customer = await _customer(session, customer_id)
        now = clock.now()
        row = await holds.place_hold(
            session,
            customer_id,
            reason=data.reason,
            automatic=False,
            now=now,
            today=local_today(customer, now),
        )
        return StageOut.model_validate(row, from_attributes=True)

    async with session.begin():
        return await idem.run(session, 200, write)


@router.post("/customers/{customer_id}/credit-hold/release", response_model=StageOut)
async def release_hold(
    customer_id: str,
    data: ReasonIn,
    session: SessionDep,
    idem: IdempotencyDep,
    _: CanActOnCustomers,
) -> JSONResponse:
    async def write() -> StageOut:
        await _customer(session, customer_id)
        row = await holds.release_hold(
            session, customer_id, reason=data.reason, automatic=False, now=clock.now()
        )
        return StageOut.model_validate(row, from_attributes=True)

    async with session.begin():
        return await idem.run(session, 200, write)


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
    status: str


@router.post("/promises", status_code=201, response_model=PromiseOut)
async def create_promise(
    data: PromiseIn, session: SessionDep, idem: IdempotencyDep, who: CanActOnCustomers
) -> JSONResponse:
    """Record a promise to pay: its invoices pause until the promised date."""

    async def write() -> PromiseOut:
        customer = await _customer(session, data.customer_id)
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
    customer_id: str | None
    invoice_id: str | None
    kind: str
    reason: str
    resume_on: dt.date | None
    lifted_at: dt.datetime | None


@router.post("/pauses", status_code=201, response_model=PauseOut)
async def create_pause(
    data: PauseIn, session: SessionDep, idem: IdempotencyDep, who: CanActOnCustomers
) -> JSONResponse:
    """A manual stop for a customer or an invoice, with a reason and an optional resume date."""

    async def write() -> PauseOut:
        if data.invoice_id and await session.get(InvoiceProjection, data.invoice_id) is None:
            raise DomainError(422, "Unknown invoice", "invoice_id: no such invoice", "invoice_id")
        if data.customer_id:
            await _customer(session, data.customer_id)
        pause = Pause(**data.model_dump(), kind="manual", created_by=who.name)
        session.add(pause)
        await session.flush()
        return PauseOut.model_validate(pause, from_attributes=True)

    async with session.begin():
        return await idem.run(session, 201, write)


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
