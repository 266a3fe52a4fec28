"""Every API route but the probes and the public pages needs a bearer token (401 without
one, or with a made-up one) and its scope (403 with a token holding every other scope);
every UI page needs a signed-in session."""

from __future__ import annotations

import secrets
from importlib import import_module

from access_kit import PUBLIC, all_routes, api_routes, client, concrete, mint, required_scopes
from ui_kit import Served, UiStack

#: Routes any valid token may call (they only describe the caller), and the audit log,
#: which checks the role rather than a scope (see test_audit_log).
ANY_TOKEN = {("GET", "/v1/tokens/me")}
ADMIN_ROLE = {("GET", "/v1/audit")}


def services(stack: UiStack) -> dict[str, Served]:
    return {
        "invoice": stack.invoice,
        "dunning": stack.dunning,
        "risk": stack.risk,
        "notify": stack.notify,
    }


def _headers() -> dict[str, str]:
    return {"Idempotency-Key": secrets.token_hex(8)}


async def test_every_api_route_answers_401_without_a_valid_token(ui_stack: UiStack) -> None:
    checked = 0
    made_up = "dw_" + secrets.token_urlsafe(32)
    for name, served in services(ui_stack).items():
        async with client(served, token=None) as anon, client(served, made_up) as forged:
            for route in api_routes(served.app):
                for c in (anon, forged):
                    r = await c.request(
                        route.method, concrete(route.path), json={}, headers=_headers()
                    )
                    where = f"{name} {route.method} {route.path}"
                    assert r.status_code == 401, f"{where}: {r.status_code} {r.text[:200]}"
                    assert r.headers["content-type"].startswith("application/problem+json")
                    assert r.headers["www-authenticate"].startswith("Bearer")
                checked += 1
    assert checked >= 60  # the four APIs, all of them


async def test_every_api_route_names_its_scope_and_refuses_a_token_without_it(
    ui_stack: UiStack,
) -> None:
    checked = 0
    for name, served in services(ui_stack).items():
        all_scopes = sorted(import_module(f"{name}.auth").SCOPES)
        for route in api_routes(served.app):
            where = f"{name} {route.method} {route.path}"
            if (route.method, route.path) in ANY_TOKEN | ADMIN_ROLE:
                continue
            needed = required_scopes(route)
            assert needed, f"{where} demands no scope"
            others = [s for s in all_scopes if s not in needed]
            token = await mint(served, role="admin", scopes=others)
            async with client(served, token) as c:
                r = await c.request(route.method, concrete(route.path), json={}, headers=_headers())
            assert r.status_code == 403, f"{where}: {r.status_code} {r.text[:200]}"
            assert r.headers["content-type"].startswith("application/problem+json")
            assert sorted(needed)[0] in r.json()["detail"]
            checked += 1
    assert checked >= 50


async def test_every_ui_page_needs_a_session(ui_stack: UiStack) -> None:
    checked = 0
    async with client(ui_stack.notify, token=None) as anon:
        for route in all_routes(ui_stack.notify.app):
            if route.path.startswith("/v1/") or PUBLIC.match(route.path):
                continue
            r = await anon.request(route.method, concrete(route.path), follow_redirects=False)
            assert r.status_code == 303, f"{route.method} {route.path}: {r.status_code}"
            assert r.headers["location"].startswith("/login"), route.path
            checked += 1
    assert checked >= 15
