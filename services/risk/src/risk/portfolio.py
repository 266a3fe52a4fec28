"""Object-level access in risk: a collector's token reads only its own portfolio's customers.

A token bound to a person (`subject`, set when the collector UI mints a user's tokens) with
the collector role may read a customer's profile, score and signals only when the customer's
owner (risk's worklist projection keeps it, from invoice's facts) is that person; otherwise
404, as for a customer risk has never heard of. The portfolio-wide lists of signals and
scores are refused with 403; the worklist narrows itself (see risk.api.worklist). The
dashboards' analytics are aggregates for the whole team and stay readable.
"""

from __future__ import annotations

from typing import Annotated

from duewise_service.auth import Principal
from duewise_service.db import SessionDep
from duewise_service.portfolio import bound_to_portfolio, not_in_portfolio, outside_portfolio
from fastapi import Depends, Request
from sqlalchemy import Table, select

from risk.auth import AUTH
from risk.models import WorklistRow

_WORKLIST: Table = WorklistRow.__table__  # type: ignore[attr-defined]
_PORTFOLIO_WIDE = {"/v1/signals", "/v1/scores"}


async def portfolio_guard(
    request: Request,
    session: SessionDep,
    principal: Annotated[Principal, Depends(AUTH.current_principal)],
) -> None:
    """404 for another portfolio's customer, 403 for a list of everyone's."""
    if not bound_to_portfolio(principal):
        return
    if request.url.path.rstrip("/") in _PORTFOLIO_WIDE:
        raise outside_portfolio(
            "lists across every portfolio are for admins and systems; use /v1/worklist"
        )
    customer_id = request.path_params.get("customer_id")
    if customer_id is None:
        return
    async with session.begin():
        owner = await session.scalar(
            select(_WORKLIST.c.owner).where(_WORKLIST.c.customer_id == str(customer_id))
        )
    if owner != principal.subject:
        raise not_in_portfolio(str(customer_id))
