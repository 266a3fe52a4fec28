"""Dry-run timelines: what fired, what will fire, when, on which channel, with which fee, why."""

from __future__ import annotations

import datetime as dt

from duewise_service.db import SessionDep
from duewise_service.problems import not_found
from fastapi import APIRouter
from pydantic import BaseModel
from sqlmodel import col, select

from dunning.auth import CanReadAR
from dunning.clock import clock
from dunning.models import CustomerProjection, InvoiceProjection, ScheduledStep

router = APIRouter(tags=["timelines"])


class TimelineEntry(BaseModel):
    invoice_id: str
    step_key: str
    step_index: int
    status: str
    send_at: dt.datetime
    local_date: dt.date
    channel: str
    fee_amount: int
    interest_amount: int
    policy_id: str
    policy_version: int
    reason: str
    note: str | None
    notice_id: str | None
    emitted_at: dt.datetime | None


class Timeline(BaseModel):
    now: dt.datetime
    fired: list[TimelineEntry]
    upcoming: list[TimelineEntry]
    other: list[TimelineEntry]


def _timeline(rows: list[ScheduledStep]) -> Timeline:
    entries = [TimelineEntry.model_validate(r, from_attributes=True) for r in rows]
    return Timeline(
        now=clock.now(),
        fired=[e for e in entries if e.status == "emitted"],
        upcoming=[e for e in entries if e.status in ("pending", "claimed")],
        other=[e for e in entries if e.status in ("cancelled", "skipped")],
    )


@router.get("/invoices/{invoice_id}/timeline", response_model=Timeline)
async def invoice_timeline(invoice_id: str, session: SessionDep, _: CanReadAR) -> Timeline:
    async with session.begin():
        if await session.get(InvoiceProjection, invoice_id) is None:
            raise not_found("invoice", invoice_id)
        rows = (
            await session.scalars(
                select(ScheduledStep)
                .where(col(ScheduledStep.invoice_id) == invoice_id)
                .order_by(col(ScheduledStep.send_at))
            )
        ).all()
    return _timeline(list(rows))


@router.get("/customers/{customer_id}/timeline", response_model=Timeline)
async def customer_timeline(customer_id: str, session: SessionDep, _: CanReadAR) -> Timeline:
    async with session.begin():
        if await session.get(CustomerProjection, customer_id) is None:
            raise not_found("customer", customer_id)
        rows = (
            await session.scalars(
                select(ScheduledStep)
                .where(col(ScheduledStep.customer_id) == customer_id)
                .order_by(col(ScheduledStep.send_at), col(ScheduledStep.invoice_id))
            )
        ).all()
    return _timeline(list(rows))
