"""/v1/reports: the AR aging report across all customers, totals per currency."""

from __future__ import annotations

import datetime as dt

from duewise_service.db import SessionDep
from fastapi import APIRouter

from invoice import service
from invoice.auth import CanReadAR

router = APIRouter(prefix="/reports", tags=["reports"])


@router.get("/aging")
async def aging(
    session: SessionDep, _: CanReadAR, as_of: dt.date | None = None
) -> dict[str, object]:
    """Open balances by days past due (current, 1-30, 31-60, 61-90, 90+), one row per currency."""
    async with session.begin():
        return await service.aging_report(session=session, as_of=as_of)
