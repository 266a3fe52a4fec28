"""The collectors' worklist: customers in working order, one index scan a page."""

from __future__ import annotations

from typing import Annotated, Any

from duewise_events.catalogue import DunningStage, RiskBand
from duewise_service.auth import Principal
from duewise_service.db import SessionDep
from duewise_service.problems import DomainError
from fastapi import APIRouter, Query

from risk.auth import CanReadRisk
from risk.service import reads

router = APIRouter(tags=["worklist"])
Limit = Annotated[int, Query(ge=1, le=500)]
Currency = Annotated[str | None, Query(pattern="^[A-Z]{3}$")]
#: The UI mints a user's tokens as "ui:<user name>"; the owner on a customer is the user name.
UI_TOKEN_PREFIX = "ui:"


def portfolio_of(principal: Principal) -> str | None:
    """The owner whose customers a collector's token may see; None for other roles (all)."""
    if principal.role != "collector":
        return None
    return principal.name.removeprefix(UI_TOKEN_PREFIX)


@router.get("/worklist")
async def worklist(
    session: SessionDep,
    principal: CanReadRisk,
    owner: str | None = None,
    band: RiskBand | None = None,
    stage: DunningStage | None = None,
    currency: Currency = None,
    limit: Limit = 50,
    cursor: str | None = None,
) -> dict[str, Any]:
    """Customers to work, in order: disputed or promised last; then critical band first,
    largest overdue amount first. A collector's token sees its own portfolio only."""
    mine = portfolio_of(principal)
    if mine is not None:
        if owner is not None and owner != mine:
            raise DomainError(
                403, "Forbidden", "A collector sees only the customers in its own portfolio."
            )
        owner = mine
    items, nxt = await reads.list_worklist(
        session,
        owner=owner,
        band=band,
        stage=stage,
        currency=currency,
        limit=limit,
        cursor=cursor,
    )
    return {"items": items, "next_cursor": nxt}
