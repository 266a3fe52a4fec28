"""TokenAuth on the real PostgreSQL: 401, 403 naming the scope, the cache, the admin token
from the environment, and tokens limited to their role's scopes."""

from __future__ import annotations

import asyncio
import hashlib

import httpx
import pytest
from duewise_service.auth import TokenAuth, api_token_table, hash_token
from duewise_service.db import make_sessionmaker
from fastapi import FastAPI
from service_kit_support import ADMIN, API_TOKEN, AUTH
from sqlalchemy import MetaData, select, text
from sqlalchemy.ext.asyncio import AsyncEngine


async def test_no_token_or_a_bad_one_is_401_with_a_challenge(anon: httpx.AsyncClient) -> None:
    for headers in ({}, {"Authorization": "Basic abc"}, {"Authorization": "Bearer "}):
        r = await anon.get("/me", headers=headers)
        assert r.status_code == 401
        assert r.headers["content-type"].startswith("application/problem+json")
        assert r.headers["www-authenticate"] == 'Bearer realm="duewise"'
        assert "Bearer" in r.json()["detail"]
    r = await anon.get("/me", headers={"Authorization": "Bearer dw_not-a-token"})
    assert r.status_code == 401
    assert r.json()["detail"] == "the bearer token is not valid"
    assert r.json()["type"].endswith("/unauthorized")


async def test_missing_scope_is_403_naming_it(
    admin: httpx.AsyncClient, anon: httpx.AsyncClient
) -> None:
    r = await admin.post("/tokens", json={"name": "dashboards", "role": "reader"})
    assert r.status_code == 201, r.text
    reader = {"Authorization": f"Bearer {r.json()['token']}"}
    r = await anon.get("/me", headers=reader)
    assert r.status_code == 200
    assert (r.json()["role"], r.json()["scopes"]) == ("reader", ["things:read"])
    r = await anon.post("/things", json={"name": "x"}, headers=reader)
    assert r.status_code == 403
    assert r.headers["content-type"].startswith("application/problem+json")
    assert "things:write" in r.json()["detail"]
    assert 'scope="things:write"' in r.headers["www-authenticate"]


async def test_create_token_keeps_scopes_within_the_role(
    admin: httpx.AsyncClient, anon: httpx.AsyncClient, kit_engine: AsyncEngine
) -> None:
    r = await admin.post(
        "/tokens", json={"name": "x", "role": "reader", "scopes": ["things:write"]}
    )
    assert r.status_code == 422
    assert r.json()["field"] == "scopes"
    assert "things:write" in r.json()["detail"]
    r = await admin.post("/tokens", json={"name": "x", "role": "superuser"})
    assert (r.status_code, r.json()["field"]) == (422, "role")

    # Explicit scopes narrow the role: a service token that may only read.
    r = await admin.post(
        "/tokens", json={"name": "ro", "role": "service", "scopes": ["things:read"]}
    )
    assert r.status_code == 201, r.text
    token = r.json()["token"]
    assert r.json()["id"].startswith("tok_")
    headers = {"Authorization": f"Bearer {token}"}
    assert (await anon.get("/me", headers=headers)).json()["scopes"] == ["things:read"]
    assert (await anon.post("/things", json={"name": "x"}, headers=headers)).status_code == 403

    # Stored only as the SHA-256 of the plaintext.
    async with kit_engine.connect() as conn:
        dump = repr((await conn.execute(select(API_TOKEN))).all())
    assert token not in dump
    assert ADMIN not in dump
    assert hashlib.sha256(token.encode()).hexdigest() in dump


async def test_verified_tokens_are_cached_until_the_entry_expires(
    admin: httpx.AsyncClient, anon: httpx.AsyncClient, kit_app: FastAPI, kit_engine: AsyncEngine
) -> None:
    kit_app.state.token_cache.ttl_s = 0.3
    r = await admin.post("/tokens", json={"name": "erp", "role": "service"})
    headers = {"Authorization": f"Bearer {r.json()['token']}"}
    assert (await anon.get("/me", headers=headers)).status_code == 200
    async with kit_engine.begin() as conn:
        await conn.execute(text("UPDATE api_token SET revoked_at = now() WHERE name = 'erp'"))
    # Within the TTL the cache answers (no database round trip, so the revocation is unseen).
    assert (await anon.get("/me", headers=headers)).status_code == 200
    await asyncio.sleep(0.4)
    assert (await anon.get("/me", headers=headers)).status_code == 401
    # A token that is not valid is never cached.
    bad = {"Authorization": "Bearer dw_nope"}
    assert (await anon.get("/me", headers=bad)).status_code == 401
    assert kit_app.state.token_cache.get(hash_token("dw_nope")) is None


async def test_admin_token_upsert_replaces_the_previous_one(
    anon: httpx.AsyncClient, kit_engine: AsyncEngine, kit_app: FastAPI
) -> None:
    maker = make_sessionmaker(kit_engine)
    try:
        async with maker() as session, session.begin():
            await AUTH.upsert_admin_token(session, "rotated-secret")
        kit_app.state.token_cache.ttl_s = 0.0
        r = await anon.get("/me", headers={"Authorization": "Bearer rotated-secret"})
        assert r.status_code == 200
        assert r.json()["id"] == "tok_env_admin"
        assert r.json()["scopes"] == sorted(["things:write", "things:read", "tokens:admin"])
        r = await anon.get("/me", headers={"Authorization": f"Bearer {ADMIN}"})
        assert r.status_code == 401
        async with kit_engine.connect() as conn:
            n = await conn.scalar(text("SELECT count(*) FROM api_token WHERE role = 'admin'"))
        assert n == 1
    finally:
        async with maker() as session, session.begin():
            await AUTH.upsert_admin_token(session, ADMIN)


def test_configuration_is_checked_up_front() -> None:
    table = api_token_table(MetaData())
    with pytest.raises(ValueError, match="unknown scopes"):
        TokenAuth(table, scopes={"a:read": "a"}, role_scopes={"x": frozenset({"b:write"})})
    auth = TokenAuth(table, scopes={"a:read": "a"}, role_scopes={"x": frozenset({"a:read"})})
    with pytest.raises(ValueError, match="unknown scope"):
        auth.require("a:write")


async def test_the_token_routes(admin: httpx.AsyncClient, anon: httpx.AsyncClient) -> None:
    r = await admin.post("/tokens", json={"name": "erp", "role": "service"})
    assert r.status_code == 201, r.text
    body = r.json()
    assert (body["name"], body["role"], body["scopes"]) == ("erp", "service", [])
    assert body["token"].startswith("dw_")
    service = {"Authorization": f"Bearer {body['token']}"}
    r = await anon.get("/tokens/me", headers=service)
    assert r.json() == {
        "id": body["id"],
        "name": "erp",
        "role": "service",
        "scopes": ["things:read", "things:write"],
        "subject": None,
    }
    r = await anon.post("/tokens", json={"name": "x", "role": "reader"}, headers=service)
    assert r.status_code == 403
    assert "tokens:admin" in r.json()["detail"]
    r = await admin.post("/tokens", json={"name": "x", "role": "service", "extra": 1})
    assert r.status_code == 422
    assert (await anon.get("/tokens/me")).status_code == 401
