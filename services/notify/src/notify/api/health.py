"""/healthz (the process is up) and /readyz (it can reach its database)."""

from __future__ import annotations

from duewise_service.db import SessionDep
from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy import text

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(session: SessionDep) -> JSONResponse:
    try:
        await session.execute(text("SELECT 1 FROM message LIMIT 1"))
    except Exception as exc:
        return JSONResponse({"status": "unavailable", "detail": str(exc)[:200]}, status_code=503)
    return JSONResponse({"status": "ok"})
