"""POST /v1/bounces: a delivery status notification (RFC 3464) from the mail system."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from duewise_service.db import SessionDep
from duewise_service.problems import DomainError
from fastapi import APIRouter, Request

from notify.auth import CanReportBounces
from notify.service.bounces import apply_dsn

router = APIRouter(tags=["bounces"])
MAX_DSN_BYTES = 1_000_000


@router.post("/bounces")
async def report_bounce(
    request: Request, session: SessionDep, _: CanReportBounces
) -> dict[str, Any]:
    """Send the raw DSN as the body (for example from an inbound-mail webhook)."""
    raw = await request.body()
    if not raw or len(raw) > MAX_DSN_BYTES:
        raise DomainError(
            422, "Invalid DSN", f"body: 1..{MAX_DSN_BYTES} bytes of RFC 3464 mail", "body"
        )
    async with session.begin():
        outcomes = await apply_dsn(session, raw)
    if not outcomes:
        raise DomainError(
            422, "Not a DSN", "body: no multipart/report delivery-status part was found", "body"
        )
    return {"recipients": [asdict(o) for o in outcomes]}
