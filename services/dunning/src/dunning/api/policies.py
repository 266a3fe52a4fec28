"""/v1/policies: CRUD (validated, versioned, audited) and the stateless preview."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from duewise_service.db import SessionDep
from duewise_service.problems import DomainError, ValidationProblem, not_found
from fastapi import APIRouter, Query, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlmodel import col, select

from dunning.auth import CanReadAR, CanWritePolicies, IdempotencyDep
from dunning.clock import clock
from dunning.domain.plan import InvoiceFacts, plan
from dunning.domain.policy import DEFAULT_POLICY, PolicySpec
from dunning.models import Policy
from dunning.service import policies as svc
from dunning.service.policies import PolicyIn, PolicyOut

router = APIRouter(tags=["policies"])


class Page(BaseModel):
    items: list[PolicyOut]
    next_cursor: str | None


@router.post("/policies", status_code=201, response_model=PolicyOut)
async def create_policy(
    data: PolicyIn, session: SessionDep, idem: IdempotencyDep, who: CanWritePolicies
) -> JSONResponse:
    """Create a policy; a bad spec is a 422 naming the field, and nothing is stored."""

    async def write() -> PolicyOut:
        row = await svc.create_policy(session=session, data=data, actor=who.name)
        return PolicyOut.model_validate(row, from_attributes=True)

    async with session.begin():
        return await idem.run(session, 201, write)


@router.get("/policies", response_model=Page)
async def list_policies(
    session: SessionDep,
    _: CanReadAR,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: str | None = None,
) -> Page:
    stmt = select(Policy).where(col(Policy.deleted_at).is_(None)).order_by(col(Policy.id))
    if cursor:
        stmt = stmt.where(col(Policy.id) > cursor)
    async with session.begin():
        rows = (await session.scalars(stmt.limit(limit + 1))).all()
    items = [PolicyOut.model_validate(r, from_attributes=True) for r in rows[:limit]]
    return Page(items=items, next_cursor=rows[limit - 1].id if len(rows) > limit else None)


@router.get("/policies/{policy_id}", response_model=PolicyOut)
async def get_policy(policy_id: str, session: SessionDep, _: CanReadAR) -> PolicyOut:
    async with session.begin():
        row = await svc.get_policy(session, policy_id)
        return PolicyOut.model_validate(row, from_attributes=True)


@router.put("/policies/{policy_id}", response_model=PolicyOut)
async def update_policy(
    policy_id: str, data: PolicyIn, session: SessionDep, idem: IdempotencyDep, who: CanWritePolicies
) -> JSONResponse:
    """Replace a policy (version + 1); applies to future steps only."""

    async def write() -> PolicyOut:
        row = await svc.update_policy(
            session=session, policy_id=policy_id, data=data, actor=who.name, now=clock.now()
        )
        return PolicyOut.model_validate(row, from_attributes=True)

    async with session.begin():
        return await idem.run(session, 200, write)


@router.delete("/policies/{policy_id}", status_code=204)
async def delete_policy(policy_id: str, session: SessionDep, who: CanWritePolicies) -> Response:
    async with session.begin():
        await svc.delete_policy(
            session=session, policy_id=policy_id, actor=who.name, now=clock.now()
        )
    return Response(status_code=204)


class FactsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    invoice_id: str = "preview"
    customer_id: str = "preview"
    number: str = "PREVIEW"
    issue_date: dt.date
    due_date: dt.date
    total: int = Field(ge=0, strict=True)
    balance: int | None = Field(default=None, ge=0, strict=True)
    currency: str = Field(pattern=r"^[A-Z]{3}$")
    timezone: str
    country: str = Field(pattern=r"^[A-Z]{2}$")
    last_payment_date: dt.date | None = None
    kind: Literal["standard", "fee"] = Field(
        default="standard", description="fee: an invoice made of an assessed fee (no fees on fees)"
    )


class PreviewIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    policy: dict[str, Any] | None = None
    policy_id: str | None = None
    invoice: FactsIn


class PreviewStep(BaseModel):
    index: int
    key: str
    offset_days: int
    channel: str
    template: str
    tone: str
    nominal_date: dt.date
    send_date: dt.date
    send_at_local: dt.datetime
    send_at_utc: dt.datetime
    fee_amount: int
    interest_amount: int
    credit_hold: bool
    reason: str


class PreviewOut(BaseModel):
    policy_name: str
    currency: str
    timezone: str
    steps: list[PreviewStep]


@router.post("/policies/preview", response_model=PreviewOut)
async def preview(data: PreviewIn, session: SessionDep, _: CanReadAR) -> PreviewOut:
    """Every step of a policy (given, stored, or the default) for the invoice facts; no state."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    if data.policy is not None:
        spec = svc.parse_spec(data.policy, at=("policy",))
    elif data.policy_id is not None:
        async with session.begin():
            row = await session.get(Policy, data.policy_id)
        if row is None or row.deleted_at is not None:
            raise not_found("policy", data.policy_id)
        spec = PolicySpec.model_validate(row.spec)
    else:
        spec = DEFAULT_POLICY
    f = data.invoice
    try:
        zone = ZoneInfo(f.timezone)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise DomainError(
            422,
            "Invalid time zone",
            f"invoice/timezone: {f.timezone!r} is not IANA",
            "invoice/timezone",
        ) from exc
    facts = InvoiceFacts(
        invoice_id=f.invoice_id,
        customer_id=f.customer_id,
        number=f.number,
        issue_date=f.issue_date,
        due_date=f.due_date,
        total=f.total,
        balance=f.total if f.balance is None else f.balance,
        currency=f.currency,
        timezone=f.timezone,
        country=f.country,
        last_payment_date=f.last_payment_date,
        kind=f.kind,
    )
    try:
        planned = plan(facts, spec)
    except ValidationError as exc:
        raise ValidationProblem(exc.errors(), ("invoice",)) from exc
    return PreviewOut(
        policy_name=spec.name,
        currency=f.currency,
        timezone=f.timezone,
        steps=[
            PreviewStep(
                index=p.index,
                key=p.key,
                offset_days=p.step.offset_days,
                channel=p.step.channel,
                template=p.step.template,
                tone=p.step.tone,
                nominal_date=p.nominal_date,
                send_date=p.send_date,
                send_at_local=p.send_at.astimezone(zone),
                send_at_utc=p.send_at.astimezone(dt.UTC),
                fee_amount=p.fee_amount,
                interest_amount=p.interest_amount,
                credit_hold=p.step.credit_hold,
                reason=p.reason,
            )
            for p in planned
        ],
    )
