"""Customer dunning stages and credit holds, with their events."""

from __future__ import annotations

import datetime as dt
from typing import Literal

from duewise_events.catalogue import CreditHoldPlaced, CreditHoldReleased, DunningStageChanged
from duewise_service.problems import DomainError
from sqlalchemy import func
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from dunning.models import OUTBOX, CustomerProjection, CustomerStage, InvoiceProjection, new_id
from dunning.service.schedule import CLOSED

Stage = Literal["current", "reminded", "final_notice", "credit_hold"]
RANK: dict[str, int] = {"current": 0, "reminded": 1, "final_notice": 2, "credit_hold": 3}


async def stage_of(session: AsyncSession, customer_id: str) -> CustomerStage:
    row = await session.get(CustomerStage, customer_id, with_for_update=True)
    if row is None:
        row = CustomerStage(customer_id=customer_id)
        session.add(row)
        await session.flush()
    return row


async def change_stage(
    session: AsyncSession, row: CustomerStage, to: Stage, reason: str, now: dt.datetime
) -> None:
    if row.stage == to:
        return
    await OUTBOX.add(
        session,
        DunningStageChanged(
            customer_id=row.customer_id,
            from_stage=row.stage,
            to_stage=to,
            reason=reason,
            changed_at=now,
        ),
    )
    row.stage, row.updated_at = to, now


async def escalate(
    session: AsyncSession, customer_id: str, to: Stage, reason: str, now: dt.datetime
) -> None:
    """Move the customer up to `to` (never down) because a step fired."""
    row = await stage_of(session, customer_id)
    if RANK[to] > RANK[row.stage]:
        await change_stage(session, row, to, reason, now)


async def overdue_balance(session: AsyncSession, customer_id: str, today: dt.date) -> int:
    total = await session.scalar(
        select(func.coalesce(func.sum(InvoiceProjection.balance), 0)).where(
            col(InvoiceProjection.customer_id) == customer_id,
            col(InvoiceProjection.status).not_in(CLOSED),
            col(InvoiceProjection.due_date) < today,
        )
    )
    return int(total or 0)


async def place_hold(
    session: AsyncSession,
    customer_id: str,
    *,
    reason: str,
    automatic: bool,
    now: dt.datetime,
    today: dt.date,
) -> CustomerStage:
    row = await stage_of(session, customer_id)
    if row.on_hold:
        if automatic:
            return row
        raise DomainError(409, "Already on hold", f"customer {customer_id} is on credit hold")
    customer = await session.get(CustomerProjection, customer_id)
    row.on_hold, row.hold_id, row.hold_reason = True, new_id("hold"), reason
    await OUTBOX.add(
        session,
        CreditHoldPlaced(
            customer_id=customer_id,
            hold_id=row.hold_id,
            reason=reason,
            automatic=automatic,
            overdue_balance=await overdue_balance(session, customer_id, today),
            currency=customer.currency if customer else "EUR",
            placed_at=now,
        ),
    )
    await change_stage(session, row, "credit_hold", reason, now)
    return row


async def release_hold(
    session: AsyncSession, customer_id: str, *, reason: str, automatic: bool, now: dt.datetime
) -> CustomerStage:
    row = await stage_of(session, customer_id)
    if not row.on_hold or row.hold_id is None:
        if automatic:
            return row
        raise DomainError(409, "Not on hold", f"customer {customer_id} is not on credit hold")
    await OUTBOX.add(
        session,
        CreditHoldReleased(
            customer_id=customer_id,
            hold_id=row.hold_id,
            reason=reason,
            automatic=automatic,
            released_at=now,
        ),
    )
    row.on_hold, row.hold_reason = False, None
    await change_stage(session, row, "current", reason, now)
    return row


async def release_if_cleared(
    session: AsyncSession, customer_id: str, now: dt.datetime, today: dt.date
) -> None:
    """Automatic release (and back to `current`) once nothing is overdue."""
    row = await session.get(CustomerStage, customer_id)
    if row is None or await overdue_balance(session, customer_id, today) > 0:
        return
    if row.on_hold:
        await release_hold(
            session, customer_id, reason="overdue balance cleared", automatic=True, now=now
        )
    elif row.stage != "current":
        await change_stage(session, row, "current", "overdue balance cleared", now)
