"""Across customers: signals by kind, and scores in worklist order; both paginated."""

from __future__ import annotations

from typing import Annotated, Any

from duewise_events.catalogue import RiskBand, SignalKind
from duewise_service.db import SessionDep
from fastapi import APIRouter, Query

from risk.auth import CanReadRisk
from risk.service import reads

router = APIRouter(tags=["portfolio"])
Limit = Annotated[int, Query(ge=1, le=500)]


@router.get("/signals")
async def list_signals(
    session: SessionDep,
    _: CanReadRisk,
    open: bool | None = None,
    kind: SignalKind | None = None,
    limit: Limit = 100,
    cursor: str | None = None,
) -> dict[str, Any]:
    """Signals newest first; `open=true` for the ones not cleared."""
    items, nxt = await reads.list_signals(
        session, open_=open, kind=kind, limit=limit, cursor=cursor
    )
    return {"items": items, "next_cursor": nxt}


@router.get("/scores")
async def list_scores(
    session: SessionDep,
    _: CanReadRisk,
    band: RiskBand | None = None,
    limit: Limit = 100,
    cursor: str | None = None,
) -> dict[str, Any]:
    """Scores highest first (the collectors' worklist), optionally one band."""
    items, nxt = await reads.list_scores(session, band=band, limit=limit, cursor=cursor)
    return {"items": items, "next_cursor": nxt}
