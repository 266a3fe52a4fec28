"""An exhausted connection pool answers 503 `overloaded` within seconds, not after 30."""

from __future__ import annotations

import contextlib
import time

import httpx
import pytest
from duewise_service.db import PoolSettings, make_engine, worker_sessions
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from .factories import invoice_payload, new_customer


async def test_a_request_waits_a_short_while_for_a_connection_then_gets_503(
    client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    customer = await new_customer(client)
    pool = engine.sync_engine.pool
    wait = pool.timeout()  # type: ignore[attr-defined]
    assert wait == PoolSettings().db_pool_timeout_s == 2.0
    held: list[AsyncConnection] = []
    async with contextlib.AsyncExitStack() as stack:
        # Every connection the pool may open (pool_size + max_overflow) busy elsewhere.
        for _ in range(pool.size() + pool._max_overflow):  # type: ignore[attr-defined]
            held.append(await stack.enter_async_context(engine.connect()))
            await held[-1].exec_driver_sql("SELECT 1")
        t0 = time.monotonic()
        r = await client.post(
            "/v1/invoices",
            json=invoice_payload(customer["id"], number="OVER-1"),
            headers={"Idempotency-Key": "over-1"},
        )
        waited = time.monotonic() - t0
    assert r.status_code == 503, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["type"].endswith("/overloaded")
    assert r.headers["retry-after"] == "1"
    assert wait * 0.9 <= waited < wait + 2.0, waited
    # With connections free again the same key goes through: the 503 wrote nothing.
    r = await client.post(
        "/v1/invoices",
        json=invoice_payload(customer["id"], number="OVER-1"),
        headers={"Idempotency-Key": "over-1"},
    )
    assert r.status_code == 201, r.text
    assert "idempotent-replayed" not in r.headers


async def test_the_wait_is_a_setting_for_requests_not_for_workers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DUEWISE_DB_POOL_TIMEOUT_S", "0.25")
    assert PoolSettings().db_pool_timeout_s == 0.25
    url = "postgresql+asyncpg://nobody@127.0.0.1:1/none"  # never connected to
    assert make_engine(url).sync_engine.pool.timeout() == 0.25  # type: ignore[attr-defined]
    explicit = make_engine(url, pool_timeout_s=5).sync_engine.pool
    assert explicit.timeout() == 5  # type: ignore[attr-defined]
    # A relay or consumer has no client waiting: it waits as long as SQLAlchemy always did.
    async with worker_sessions(url) as sessions:
        worker_pool = sessions.kw["bind"].sync_engine.pool
        assert worker_pool.timeout() == 30.0
