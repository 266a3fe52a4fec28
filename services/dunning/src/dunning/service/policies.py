"""Policy CRUD: validated specs, versions, the audit log, and recomputing future steps."""

from __future__ import annotations

import datetime as dt
from typing import Any

from duewise_service.problems import DomainError, ValidationProblem, not_found
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from dunning.domain.policy import PolicySpec
from dunning.models import (
    AuditLog,
    CustomerProjection,
    InvoiceProjection,
    Policy,
    PolicyAssignment,
    utcnow,
)
from dunning.service.schedule import CLOSED, recompute


class PolicyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=120)
    spec: dict[str, Any]
    segment_tags: list[str] = Field(default_factory=list)
    segment_risk_band: str | None = None
    segment_min_amount: int | None = Field(default=None, ge=0, strict=True)
    priority: int = 0
    is_default: bool = False


class PolicyOut(BaseModel):
    id: str
    name: str
    version: int
    spec: dict[str, Any]
    segment_tags: list[str]
    segment_risk_band: str | None
    segment_min_amount: int | None
    priority: int
    is_default: bool
    created_at: dt.datetime
    updated_at: dt.datetime


def parse_spec(spec: dict[str, Any], *, at: tuple[str | int, ...] = ("spec",)) -> PolicySpec:
    """The validated spec, or a 422 naming each bad field under `at`."""
    try:
        return PolicySpec.model_validate(spec)
    except ValidationError as exc:
        raise ValidationProblem(exc.errors(), at) from exc


def _snapshot(row: Policy) -> dict[str, Any]:
    return PolicyOut.model_validate(row, from_attributes=True).model_dump(mode="json")


async def _audit(
    session: AsyncSession, actor: str, action: str, row: Policy, before: Any, after: Any
) -> None:
    session.add(
        AuditLog(
            actor=actor,
            action=action,
            entity="policy",
            entity_id=row.id,
            before=before,
            after=after,
        )
    )


async def create_policy(*, session: AsyncSession, data: PolicyIn, actor: str) -> Policy:
    """A new policy (version 1); audited."""
    spec = parse_spec(data.spec)
    row = Policy(**data.model_dump(exclude={"spec"}), spec=spec.model_dump(mode="json"))
    session.add(row)
    await session.flush()
    await _audit(session, actor, "policy.created", row, None, _snapshot(row))
    await recompute_affected(session=session, now=None)
    return row


async def get_policy(session: AsyncSession, policy_id: str) -> Policy:
    row = await session.get(Policy, policy_id, with_for_update=True)
    if row is None or row.deleted_at is not None:
        raise not_found("policy", policy_id)
    return row


async def update_policy(
    *, session: AsyncSession, policy_id: str, data: PolicyIn, actor: str, now: dt.datetime
) -> Policy:
    """Replace a policy: version + 1, audited; pending steps recomputed, emitted ones kept."""
    spec = parse_spec(data.spec)
    row = await get_policy(session, policy_id)
    before = _snapshot(row)
    for key, value in data.model_dump(exclude={"spec"}).items():
        setattr(row, key, value)
    row.spec, row.version, row.updated_at = spec.model_dump(mode="json"), row.version + 1, utcnow()
    await session.flush()
    await _audit(session, actor, "policy.updated", row, before, _snapshot(row))
    await recompute_affected(session=session, now=now)
    return row


async def delete_policy(
    *, session: AsyncSession, policy_id: str, actor: str, now: dt.datetime
) -> None:
    row = await get_policy(session, policy_id)
    before = _snapshot(row)
    row.deleted_at = utcnow()
    await _audit(session, actor, "policy.deleted", row, before, None)
    await recompute_affected(session=session, now=now)


async def assign_policy(
    *, session: AsyncSession, customer_id: str, policy_id: str | None, actor: str, now: dt.datetime
) -> None:
    """Set (or with None, remove) a customer's policy override; audited."""
    if await session.get(CustomerProjection, customer_id) is None:
        raise not_found("customer", customer_id)
    current = await session.get(PolicyAssignment, customer_id)
    before = current.policy_id if current else None
    if policy_id is not None:
        policy = await session.get(Policy, policy_id)
        if policy is None or policy.deleted_at is not None:
            raise DomainError(
                422, "Unknown policy", f"policy_id: no policy {policy_id!r}", "policy_id"
            )
        if current is None:
            session.add(
                PolicyAssignment(customer_id=customer_id, policy_id=policy_id, assigned_by=actor)
            )
        else:
            current.policy_id, current.assigned_by = policy_id, actor
    elif current is not None:
        await session.delete(current)
    session.add(
        AuditLog(
            actor=actor,
            action="policy.assigned",
            entity="customer",
            entity_id=customer_id,
            before={"policy_id": before},
            after={"policy_id": policy_id},
        )
    )
    await session.flush()
    await recompute_affected(session=session, now=now, customer_id=customer_id)


async def recompute_affected(
    *, session: AsyncSession, now: dt.datetime | None, customer_id: str | None = None
) -> None:
    """Recompute the pending steps of every open invoice (of one customer, if given)."""
    from dunning.clock import clock

    stmt = select(InvoiceProjection.id).where(col(InvoiceProjection.status).not_in(CLOSED))
    if customer_id is not None:
        stmt = stmt.where(col(InvoiceProjection.customer_id) == customer_id)
    for invoice_id in (await session.scalars(stmt)).all():
        await recompute(session, invoice_id, now or clock.now())
