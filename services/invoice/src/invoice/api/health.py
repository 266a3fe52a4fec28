"""Liveness and readiness: /healthz (the process answers), /readyz (the database; the
broker is reported but not required)."""

from __future__ import annotations

import asyncio

from duewise_events.kafka import broker_reachable
from duewise_service.problems import PROBLEM_BASE, problem_response
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """Always 200 while the process serves requests."""
    return {"status": "ok"}


async def _database_ok(engine: AsyncEngine) -> bool:
    try:
        async with asyncio.timeout(2.0), engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
        return True
    except Exception:  # any failure means "not ready"
        return False


@router.get("/readyz", response_model=None)
async def readyz(request: Request) -> JSONResponse | dict[str, object]:
    """200 when PostgreSQL answers, else a 503; the broker is reported but not required.

    Writes go to the outbox and wait there while the broker is down (the relay publishes them
    when it returns). Gating readiness on the broker would take every API pod out of its
    Service during a broker outage and refuse the very writes the outbox exists to keep.
    """
    engine: AsyncEngine = request.app.state.engine
    bootstrap: str = request.app.state.settings.kafka_bootstrap_servers
    db_ok, kafka_ok = await asyncio.gather(_database_ok(engine), broker_reachable(bootstrap))
    checks = {"database": "ok" if db_ok else "down", "kafka": "ok" if kafka_ok else "down"}
    if db_ok:
        return {"status": "ready", "checks": checks}
    down = [name for name, state in checks.items() if state == "down"]
    return problem_response(
        503,
        {
            "type": PROBLEM_BASE + "dependency-unavailable",
            "title": "Not ready",
            "status": 503,
            "detail": f"unreachable: {', '.join(down)}",
            "checks": checks,
        },
    )
