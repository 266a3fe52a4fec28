"""Scopes in the dunning service: collectors act on customers and read, only admins change
policies or the clock; tokens and Idempotency-Key records live in dunning's own tables."""

from __future__ import annotations

from typing import Any

import httpx
from dunning.auth import AUTH
from dunning_kit import customer, feed
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

POLICY: dict[str, Any] = {
    "name": "Firm",
    "spec": {
        "name": "Firm",
        "steps": [{"key": "due", "offset_days": 0, "template": "reminder_due_today"}],
    },
    "priority": 5,
}


async def _client(
    app: FastAPI, maker: async_sessionmaker[AsyncSession], role: str
) -> httpx.AsyncClient:
    async with maker() as session, session.begin():
        _, token = await AUTH.create_token(session, name=f"{role} test", role=role)
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://dunning.test",
        headers={"Authorization": f"Bearer {token}"},
    )


async def test_collectors_act_on_customers_but_do_not_change_policies(
    dunning_app: FastAPI, dclient: httpx.AsyncClient, maker: async_sessionmaker[AsyncSession]
) -> None:
    c = customer()
    await feed(maker, c)
    async with await _client(dunning_app, maker, "collector") as collector:
        r = await collector.get(f"/v1/customers/{c.customer_id}/stage")
        assert r.status_code == 200, r.text
        assert (await collector.get("/v1/policies")).status_code == 200
        r = await collector.post(
            f"/v1/customers/{c.customer_id}/credit-hold",
            json={"reason": "called, no answer"},
            headers={"Idempotency-Key": "hold-1"},
        )
        assert r.status_code == 200, r.text
        assert r.json()["on_hold"] is True
        r = await collector.post("/v1/policies", json=POLICY)
        assert r.status_code == 403
        assert "policies:write" in r.json()["detail"]
        r = await collector.put(f"/v1/customers/{c.customer_id}/policy", json={"policy_id": None})
        assert r.status_code == 403
        r = await collector.post("/v1/admin/clock", json={"now": "2026-01-01T00:00:00Z"})
        assert r.status_code == 403
    r = await dclient.post("/v1/policies", json=POLICY)
    assert r.status_code == 201, r.text
    r = await dclient.get("/v1/policies", headers={"Authorization": "Bearer nope"})
    assert r.status_code == 401
    assert r.headers["www-authenticate"].startswith("Bearer")


async def test_idempotency_records_keep_method_and_path(
    dclient: httpx.AsyncClient, maker: async_sessionmaker[AsyncSession]
) -> None:
    c = customer()
    await feed(maker, c)
    path = f"/v1/customers/{c.customer_id}/credit-hold"
    headers = {"Idempotency-Key": "hold-2"}
    first = await dclient.post(path, json={"reason": "r"}, headers=headers)
    assert first.status_code == 200, first.text
    again = await dclient.post(path, json={"reason": "r"}, headers=headers)
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json() == first.json()
    r = await dclient.post(f"{path}/release", json={"reason": "r"}, headers=headers)
    assert r.status_code == 422
    assert r.json()["type"].endswith("/idempotency-key-reused")
    assert f"POST {path}" in r.json()["detail"]
    async with maker() as session:
        row = (await session.execute(text("SELECT method, path FROM idempotency_record"))).one()
    assert tuple(row) == ("POST", path)


async def test_admins_create_tokens_over_http(
    dunning_app: FastAPI, dclient: httpx.AsyncClient
) -> None:
    r = await dclient.post("/v1/tokens", json={"name": "collector ui", "role": "collector"})
    assert r.status_code == 201, r.text
    headers = {"Authorization": f"Bearer {r.json()['token']}"}
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=dunning_app), base_url="http://dunning.test"
    ) as anon:
        me = (await anon.get("/v1/tokens/me", headers=headers)).json()
        assert (me["role"], me["scopes"]) == ("collector", ["ar:read", "customers:act"])
        r = await anon.post("/v1/tokens", json={"name": "x", "role": "admin"}, headers=headers)
        assert r.status_code == 403
    r = await dclient.post(
        "/v1/tokens", json={"name": "x", "role": "collector", "scopes": ["policies:write"]}
    )
    assert (r.status_code, r.json()["field"]) == (422, "scopes")
