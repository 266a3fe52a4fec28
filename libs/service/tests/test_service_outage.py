"""A database that went away is a 503 the client retries, not a 500 (issue #8, scenario 5
shows it against a real restart; this pins the mapping on a bare app)."""

from __future__ import annotations

import httpx
import pytest
from duewise_service.problems import install_problem_handlers
from fastapi import FastAPI
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout


class _Refused(Exception):
    sqlstate = "57P03"  # what asyncpg's CannotConnectNowError carries while the server starts


def app() -> FastAPI:
    a = FastAPI()
    install_problem_handlers(a)
    raising: dict[str, Exception] = {
        "refused": ConnectionRefusedError(111, "Connection refused"),
        "starting": _Refused("the database system is starting up"),
        "invalidated": DBAPIError("COMMIT", {}, Exception("closed"), connection_invalidated=True),
        "bug": RuntimeError("a bug"),
        "pool": PoolTimeout("QueuePool limit of size 10 overflow 10 reached"),
    }

    @a.post("/fail/{kind}")
    async def fail(kind: str) -> None:
        raise raising[kind]

    return a


@pytest.mark.parametrize("kind", ["refused", "starting", "invalidated"])
async def test_a_lost_database_is_a_503_problem_with_retry_after(kind: str) -> None:
    transport = httpx.ASGITransport(app=app(), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
        r = await http.post(f"/fail/{kind}")
    assert r.status_code == 503
    assert r.headers["content-type"] == "application/problem+json"
    assert r.headers["retry-after"] == "1"
    assert r.json()["type"].endswith("/database-unavailable")


async def test_an_exhausted_pool_is_a_503_overloaded_problem() -> None:
    transport = httpx.ASGITransport(app=app(), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
        r = await http.post("/fail/pool")
    assert r.status_code == 503
    assert r.headers["content-type"] == "application/problem+json"
    assert r.headers["retry-after"] == "1"
    assert r.json()["type"].endswith("/overloaded")


async def test_anything_else_is_still_a_500() -> None:
    transport = httpx.ASGITransport(app=app(), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
        r = await http.post("/fail/bug")
    assert r.status_code == 500
    assert r.json()["type"].endswith("/internal-error")
