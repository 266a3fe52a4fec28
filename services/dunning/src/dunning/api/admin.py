"""/v1/admin/clock: move the settable clock (refused in production)."""

from __future__ import annotations

import datetime as dt

from duewise_service.db import SessionDep
from duewise_service.problems import DomainError
from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict

from dunning.auth import CanAdminClock, CanReadAR
from dunning.clock import clock

router = APIRouter(tags=["admin"])


class ClockIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    now: dt.datetime


class ClockOut(BaseModel):
    now: dt.datetime


@router.get("/admin/clock", response_model=ClockOut)
async def get_clock(_: CanReadAR) -> ClockOut:
    return ClockOut(now=clock.now())


@router.post("/admin/clock", response_model=ClockOut)
async def set_clock(
    data: ClockIn, request: Request, session: SessionDep, who: CanAdminClock
) -> ClockOut:
    """Set the clock for the API and the schedulers (local and test runs only)."""
    if request.app.state.settings.production:
        raise DomainError(403, "Clock is not settable", "the clock is fixed in production")
    if data.now.tzinfo is None:
        raise DomainError(422, "Invalid instant", "now: needs a UTC offset", "now")
    clock.set(data.now)
    async with session.begin():
        await clock.store(session)
    return ClockOut(now=clock.now())
