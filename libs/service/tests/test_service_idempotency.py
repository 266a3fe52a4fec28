"""IdempotencyKeys on the real PostgreSQL: replay, reuse conflict, concurrent duplicates, a
failed write releasing its key, and the purge."""

from __future__ import annotations

import asyncio
import datetime as dt

import httpx
from duewise_service.db import make_sessionmaker
from fastapi import FastAPI
from service_kit_support import IDEMPOTENCY, KEYS, THING
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine


async def _things(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return int(await conn.scalar(select(func.count()).select_from(THING)) or 0)


async def test_same_key_same_request_replays_the_first_response(
    admin: httpx.AsyncClient, kit_engine: AsyncEngine
) -> None:
    headers = {"Idempotency-Key": "k-1"}
    first = await admin.post("/things", json={"name": "a", "x": 1}, headers=headers)
    assert first.status_code == 201, first.text
    assert "idempotent-replayed" not in first.headers
    # Same body, keys in another order: the same request.
    again = await admin.post(
        "/things",
        content=b'{"x": 1,  "name": "a"}',
        headers={**headers, "Content-Type": "application/json"},
    )
    assert again.status_code == 201
    assert again.json() == first.json()
    assert again.headers["idempotent-replayed"] == "true"
    assert await _things(kit_engine) == 1
    # Without a key every call writes.
    await admin.post("/things", json={"name": "a"})
    assert await _things(kit_engine) == 2


async def test_a_key_reused_for_another_request_is_422(
    admin: httpx.AsyncClient, kit_engine: AsyncEngine
) -> None:
    headers = {"Idempotency-Key": "k-2"}
    assert (await admin.post("/things", json={"name": "a"}, headers=headers)).status_code == 201
    r = await admin.post("/things", json={"name": "b"}, headers=headers)
    assert r.status_code == 422
    assert r.json()["type"].endswith("/idempotency-key-reused")
    assert r.json()["field"] == "Idempotency-Key"
    assert "POST /things" in r.json()["detail"]
    assert await _things(kit_engine) == 1
    r = await admin.post("/things", json={"name": "a"}, headers={"Idempotency-Key": "x" * 256})
    assert (r.status_code, r.json()["field"]) == (422, "Idempotency-Key")


async def test_keys_belong_to_their_principal(
    admin: httpx.AsyncClient, anon: httpx.AsyncClient, kit_engine: AsyncEngine
) -> None:
    r = await admin.post("/tokens", json={"name": "erp", "role": "service"})
    other = {"Authorization": f"Bearer {r.json()['token']}", "Idempotency-Key": "shared"}
    await admin.post("/things", json={"name": "a"}, headers={"Idempotency-Key": "shared"})
    r = await anon.post("/things", json={"name": "a"}, headers=other)
    assert r.status_code == 201
    assert "idempotent-replayed" not in r.headers
    assert await _things(kit_engine) == 2


async def test_concurrent_duplicates_write_once_and_all_get_the_same_answer(
    admin: httpx.AsyncClient, kit_engine: AsyncEngine
) -> None:
    headers = {"Idempotency-Key": "k-race"}
    responses = await asyncio.gather(
        *(admin.post("/things", json={"name": "raced"}, headers=headers) for _ in range(6))
    )
    assert {r.status_code for r in responses} == {201}
    assert len({r.text for r in responses}) == 1
    assert sum(r.headers.get("idempotent-replayed") == "true" for r in responses) == 5
    assert await _things(kit_engine) == 1


async def test_a_failed_write_releases_its_key(
    admin: httpx.AsyncClient, kit_engine: AsyncEngine, kit_app: FastAPI
) -> None:
    headers = {"Idempotency-Key": "k-fail"}
    kit_app.state.fail_next = True
    r = await admin.post("/things", json={"name": "a"}, headers=headers)
    assert r.status_code == 409
    assert await _things(kit_engine) == 0
    async with kit_engine.connect() as conn:
        assert await conn.scalar(select(func.count()).select_from(IDEMPOTENCY)) == 0
    r = await admin.post("/things", json={"name": "a"}, headers=headers)
    assert r.status_code == 201
    assert "idempotent-replayed" not in r.headers
    assert await _things(kit_engine) == 1


async def test_purge_drops_only_expired_records(
    admin: httpx.AsyncClient, kit_engine: AsyncEngine
) -> None:
    for key in ("old", "new"):
        await admin.post("/things", json={"name": key}, headers={"Idempotency-Key": key})
    async with kit_engine.begin() as conn:
        await conn.execute(
            text(
                "UPDATE idempotency_record SET created_at = now() - interval '25 hours'"
                " WHERE key = 'old'"
            )
        )
    async with make_sessionmaker(kit_engine)() as session, session.begin():
        assert await KEYS.purge_expired(session) == 1
        assert await KEYS.purge_expired(session, older_than=dt.timedelta(hours=1)) == 0
    async with kit_engine.connect() as conn:
        keys = (await conn.execute(select(IDEMPOTENCY.c.key))).scalars().all()
    assert keys == ["new"]
