"""Bearer tokens: 401 without one, 403 without the scope, stored only as a hash."""

from __future__ import annotations

import asyncio
import hashlib

import httpx
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from .conftest import ADMIN_TOKEN
from .factories import customer_payload, invoice_payload, new_customer


async def test_no_token_is_401(anon: httpx.AsyncClient) -> None:
    for method, path in [("GET", "/v1/invoices"), ("POST", "/v1/customers")]:
        r = await anon.request(method, path, json={})
        assert r.status_code == 401
        assert r.headers["content-type"].startswith("application/problem+json")
        assert r.headers["www-authenticate"].startswith("Bearer")
    r = await anon.get("/v1/invoices", headers={"Authorization": "Bearer wrong"})
    assert r.status_code == 401


async def test_health_needs_no_token(anon: httpx.AsyncClient) -> None:
    assert (await anon.get("/healthz")).status_code == 200
    r = await anon.get("/readyz")
    assert r.status_code == 200, r.text
    assert r.json()["checks"] == {"database": "ok", "kafka": "ok"}


async def test_roles_and_scopes(client: httpx.AsyncClient, anon: httpx.AsyncClient) -> None:
    c = await new_customer(client)
    r = await client.post("/v1/tokens", json={"name": "ar team", "role": "collector"})
    assert r.status_code == 201, r.text
    collector = {"Authorization": f"Bearer {r.json()['token']}"}
    assert (await anon.get("/v1/invoices", headers=collector)).status_code == 200
    r = await anon.post("/v1/customers", json=customer_payload(), headers=collector)
    assert r.status_code == 403
    assert "customers:write" in r.text
    r = await anon.post("/v1/invoices", json=invoice_payload(c["id"]), headers=collector)
    assert r.status_code == 403
    r = await anon.post("/v1/tokens", json={"name": "x", "role": "admin"}, headers=collector)
    assert r.status_code == 403

    r = await client.post("/v1/tokens", json={"name": "erp", "role": "service"})
    service = {"Authorization": f"Bearer {r.json()['token']}"}
    r = await anon.post("/v1/invoices", json=invoice_payload(c["id"]), headers=service)
    assert r.status_code == 201
    assert (
        await anon.post("/v1/tokens", json={"name": "x", "role": "admin"}, headers=service)
    ).status_code == 403


async def test_tokens_stored_hashed(client: httpx.AsyncClient, engine: AsyncEngine) -> None:
    r = await client.post("/v1/tokens", json={"name": "erp", "role": "service"})
    plaintext = r.json()["token"]
    async with engine.connect() as conn:
        rows = (await conn.execute(text("SELECT * FROM api_token"))).all()
    dump = repr(rows)
    assert plaintext not in dump
    assert ADMIN_TOKEN not in dump
    assert hashlib.sha256(plaintext.encode()).hexdigest() in dump


async def test_scopes_limited_by_role(client: httpx.AsyncClient) -> None:
    r = await client.post(
        "/v1/tokens", json={"name": "x", "role": "collector", "scopes": ["tokens:admin"]}
    )
    assert r.status_code == 422
    assert "scopes" in r.text


async def test_a_revoked_token_stops_working_once_its_cache_entry_expires(
    client: httpx.AsyncClient, anon: httpx.AsyncClient, engine: AsyncEngine, app: FastAPI
) -> None:
    app.state.token_cache.ttl_s = 0.3
    try:
        r = await client.post("/v1/tokens", json={"name": "erp", "role": "service"})
        token = r.json()["token"]
        headers = {"Authorization": f"Bearer {token}"}
        assert (await anon.get("/v1/invoices", headers=headers)).status_code == 200
        async with engine.begin() as conn:
            await conn.execute(text("UPDATE api_token SET revoked_at = now() WHERE name = 'erp'"))
        await asyncio.sleep(0.4)
        assert (await anon.get("/v1/invoices", headers=headers)).status_code == 401
    finally:
        app.state.token_cache.ttl_s = 10.0
