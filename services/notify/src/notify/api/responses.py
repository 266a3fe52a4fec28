"""Responses a collector logs (a reason code and a note), and the list of them."""

from __future__ import annotations

import datetime as dt
from typing import Literal

from duewise_events.catalogue import ResponseReason
from duewise_service.db import SessionDep
from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlmodel import col, select

from notify.api.paging import PageOut, check_limit, decode_cursor, next_cursor
from notify.auth import CanRead, CanWrite, IdempotencyDep
from notify.models import CustomerResponse
from notify.service.responses import log_response

router = APIRouter(tags=["responses"])


class ResponseIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    customer_id: str = Field(min_length=1)
    reason: ResponseReason
    note: str | None = Field(default=None, max_length=4000)
    invoice_ids: list[str] = Field(default_factory=list, max_length=200)
    message_id: str | None = None


class ResponseOut(BaseModel):
    id: str
    customer_id: str
    reason: str
    note: str | None
    source: Literal["reply_link", "collector"] | str
    logged_by: str | None
    message_id: str | None
    invoice_ids: list[str]
    logged_at: dt.datetime


@router.post("/responses", status_code=201, response_model=ResponseOut)
async def create_response(
    body: ResponseIn, session: SessionDep, principal: CanWrite, idem: IdempotencyDep
) -> JSONResponse:
    """Log what the customer said, with a reason code: `response.logged.v1` follows."""
    async with session.begin():

        async def produce() -> ResponseOut:
            row = await log_response(
                session,
                customer_id=body.customer_id,
                reason=body.reason,
                source="collector",
                note=body.note,
                logged_by=principal.name,
                message_id=body.message_id,
                invoice_ids=body.invoice_ids,
            )
            return ResponseOut.model_validate(row, from_attributes=True)

        return await idem.run(session, 201, produce)


@router.get("/responses", response_model=PageOut[ResponseOut])
async def list_responses(
    session: SessionDep,
    _: CanRead,
    customer_id: str | None = None,
    reason: str | None = None,
    limit: int = 50,
    cursor: str | None = None,
) -> PageOut[ResponseOut]:
    """Responses, newest first."""
    check_limit(limit)
    stmt = select(CustomerResponse).order_by(col(CustomerResponse.id).desc()).limit(limit + 1)
    if customer_id is not None:
        stmt = stmt.where(col(CustomerResponse.customer_id) == customer_id)
    if reason is not None:
        stmt = stmt.where(col(CustomerResponse.reason) == reason)
    if (after := decode_cursor(cursor)) is not None:
        stmt = stmt.where(col(CustomerResponse.id) < after)
    async with session.begin():
        rows = list((await session.scalars(stmt)).all())
    return PageOut(
        items=[ResponseOut.model_validate(r, from_attributes=True) for r in rows[:limit]],
        next_cursor=next_cursor([r.id for r in rows], limit),
    )
