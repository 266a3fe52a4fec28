"""Portfolio analytics, each as JSON or CSV (`?format=csv` or `Accept: text/csv`)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from duewise_service.db import SessionDep
from duewise_service.problems import DomainError
from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from risk.api.export import Format, table
from risk.auth import CanReadAnalytics
from risk.service import analytics

router = APIRouter(prefix="/analytics", tags=["analytics"])
FormatQ = Annotated[Format | None, Query(alias="format")]

DSO_COLUMNS = (
    "currency",
    "as_of",
    "receivables",
    "current_receivables",
    "overdue_receivables",
    "dso",
    "best_possible_dso",
    "average_days_delinquent",
)


@router.get("/dso")
async def dso(
    request: Request,
    session: SessionDep,
    _: CanReadAnalytics,
    as_of: dt.date | None = None,
    fmt: FormatQ = None,
) -> Response:
    """Days sales outstanding by the countback method, per currency."""
    rows = await analytics.dso(session, as_of)
    return table(request, fmt, "dso", rows, [*DSO_COLUMNS, "sales_by_month"])


@router.get("/delinquency")
async def delinquency(
    request: Request,
    session: SessionDep,
    _: CanReadAnalytics,
    as_of: dt.date | None = None,
    fmt: FormatQ = None,
) -> Response:
    """Average days delinquent (DSO - best possible DSO) and the overdue receivables."""
    rows = await analytics.dso(session, as_of)
    return table(request, fmt, "delinquency", rows, DSO_COLUMNS)


@router.get("/cei")
async def cei(
    request: Request,
    session: SessionDep,
    _: CanReadAnalytics,
    from_: Annotated[dt.date, Query(alias="from")],
    to: dt.date,
    fmt: FormatQ = None,
) -> Response:
    """Collection effectiveness index for the period [from, to], per currency."""
    if to < from_:
        raise DomainError(422, "Bad period", "to: must not be before from", "to")
    rows = await analytics.cei_for(session, from_, to)
    columns = (
        "currency",
        "from",
        "to",
        "opening_receivables",
        "credit_sales",
        "closing_receivables",
        "closing_current_receivables",
        "collected",
        "cei",
    )
    return table(request, fmt, "cei", rows, columns)


@router.get("/aging")
async def aging(
    request: Request,
    session: SessionDep,
    _: CanReadAnalytics,
    as_of: dt.date | None = None,
    fmt: FormatQ = None,
) -> Response:
    """Open balances by days past due, per currency."""
    rows = await analytics.aging(session, as_of)
    columns = ("currency", "as_of", "current", "1_30", "31_60", "61_90", "over_90", "total")
    return table(request, fmt, "aging", rows, columns)


@router.get("/at-risk")
async def at_risk(
    request: Request, session: SessionDep, _: CanReadAnalytics, fmt: FormatQ = None
) -> Response:
    """Open balance of the customers in the high and critical bands, per currency."""
    rows = await analytics.at_risk(session)
    columns = (
        "currency",
        "open_balance",
        "at_risk_balance",
        "at_risk_customers",
        "critical_balance",
        "at_risk_share",
    )
    return table(request, fmt, "at-risk", rows, columns)


@router.get("/step-recovery")
async def step_recovery(
    request: Request,
    session: SessionDep,
    _: CanReadAnalytics,
    days: Annotated[int, Query(ge=1, le=365)] = 7,
    fmt: FormatQ = None,
) -> Response:
    """Which dunning step recovered the money: payments within `days` after each step."""
    rows = await analytics.step_recovery(session, days)
    columns = (
        "step_key",
        "days",
        "reminders",
        "currency",
        "reminders_followed_by_payment",
        "amount_recovered",
        "recovery_rate",
    )
    return table(request, fmt, "step-recovery", rows, columns)
