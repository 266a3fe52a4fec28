"""A customer's profile, score and signals."""

from __future__ import annotations

from typing import Any

from duewise_service.db import SessionDep
from fastapi import APIRouter, Request

from risk.auth import CanReadRisk
from risk.service import reads

router = APIRouter(prefix="/customers", tags=["customers"])


@router.get("/{customer_id}/profile")
async def get_profile(
    customer_id: str, request: Request, session: SessionDep, _: CanReadRisk
) -> dict[str, Any]:
    """The payment-behaviour profile, computed from the customer's events."""
    return await reads.customer_profile(session, customer_id, request.app.state.settings.thresholds)


@router.get("/{customer_id}/score")
async def get_score(customer_id: str, session: SessionDep, _: CanReadRisk) -> dict[str, Any]:
    """Score, band and the factors that add up to the score."""
    return await reads.customer_score(session, customer_id)


@router.get("/{customer_id}/signals")
async def get_signals(customer_id: str, session: SessionDep, _: CanReadRisk) -> dict[str, Any]:
    """Open signals and past episodes, newest first."""
    return await reads.customer_signals(session, customer_id)
