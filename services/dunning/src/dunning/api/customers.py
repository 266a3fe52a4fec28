"""Per-customer actions: policy override, credit hold, stage (promises and pauses: pauses.py)."""

from __future__ import annotations

import datetime as dt

from duewise_service.db import SessionDep
from duewise_service.problems import not_found
from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.ext.asyncio import AsyncSession

from dunning.auth import CanActOnCustomers, CanReadAR, CanWritePolicies, IdempotencyDep
from dunning.clock import clock
from dunning.handlers import local_today
from dunning.models import CustomerProjection, CustomerStage
from dunning.service import holds
from dunning.service.policies import assign_policy

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


async def known_customer(session: AsyncSession, customer_id: str) -> CustomerProjection:
    """The customer as dunning knows it from invoice.events, or a 404."""
    customer = await session.get(CustomerProjection, customer_id)
    if customer is None:
        raise not_found("customer", customer_id)
    return customer


@router.get("/customers/{customer_id}/stage", response_model=StageOut)
async def get_stage(customer_id: str, session: SessionDep, _: CanReadAR) -> StageOut:
    async with session.begin():
        await known_customer(session, customer_id)
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
        customer = await known_customer(session, customer_id)
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
        await known_customer(session, customer_id)
        row = await holds.release_hold(
            session, customer_id, reason=data.reason, automatic=False, now=clock.now()
        )
        return StageOut.model_validate(row, from_attributes=True)

    async with session.begin():
        return await idem.run(session, 200, write)
