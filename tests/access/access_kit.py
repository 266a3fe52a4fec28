"""Helpers of the access tests: route enumeration, scope introspection, clients, sign-in."""

from __future__ import annotations

import re
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
from fastapi import FastAPI
from ui_kit import ADMIN_TOKEN, PASSWORD, Served

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
#: Paths that are public by design: probes, notify's signed reply/unsubscribe pages (the
#: signature in the URL is the credential), the UI's sign-in and its static files.
PUBLIC = re.compile(r"^/(healthz|readyz|livez|metrics|r/\{token\}|u/\{token\}|login|static)")


@dataclass(frozen=True)
class RouteInfo:
    method: str
    path: str
    dependant: Any


def all_routes(app: FastAPI) -> list[RouteInfo]:
    """Every (method, path) the app serves, with its dependency tree. FastAPI 0.16x keeps
    included routers lazily (`_IncludedRouter`), so their effective routes are asked for."""
    out: list[RouteInfo] = []
    for route in app.routes:
        contexts = (
            list(route.effective_route_contexts())
            if hasattr(route, "effective_route_contexts")
            else [route]
        )
        for ctx in contexts:
            if not hasattr(ctx, "dependant"):
                continue  # the docs and openapi.json
            for method in sorted(set(ctx.methods or ()) - {"HEAD", "OPTIONS"}):
                out.append(RouteInfo(method, ctx.path, ctx.dependant))
    return out


def api_routes(app: FastAPI) -> list[RouteInfo]:
    """Every route of the app's bearer-token API (/v1/…)."""
    return [r for r in all_routes(app) if r.path.startswith("/v1/")]


def required_scopes(route: RouteInfo) -> set[str]:
    """The scopes the route's dependencies demand (TokenAuth.require closures)."""
    found: set[str] = set()
    stack = list(route.dependant.dependencies)
    while stack:
        dep = stack.pop()
        call: Any = dep.call
        code = getattr(call, "__code__", None)
        if code is not None and call.__closure__:
            cells = dict(zip(code.co_freevars, call.__closure__, strict=True))
            if "scope" in cells and isinstance(cells["scope"].cell_contents, str):
                found.add(cells["scope"].cell_contents)
        stack.extend(dep.dependencies)
    return found


def concrete(path: str) -> str:
    """`path` with every {parameter} filled with an id nobody has."""
    return re.sub(r"\{[^}]+\}", "zzz_0000000000000000", path)


def client(served: Served, token: str | None = ADMIN_TOKEN) -> httpx.AsyncClient:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.AsyncClient(base_url=served.url, headers=headers, timeout=20)


async def mint(served: Served, *, role: str, scopes: list[str] | None = None) -> str:
    """A new token of `role` (optionally narrowed to `scopes`) from the service's /v1/tokens."""
    async with client(served) as c:
        r = await c.post(
            "/v1/tokens",
            json={"name": f"access-test-{secrets.token_hex(3)}", "role": role, "scopes": scopes},
        )
    assert r.status_code == 201, r.text
    token: str = r.json()["token"]
    return token


def csrf_of(html: str) -> str:
    m = CSRF.search(html)
    assert m, "no csrf_token in the page"
    return m.group(1)


@asynccontextmanager
async def signed_in(notify: Served, user: str) -> AsyncIterator[httpx.AsyncClient]:
    """A cookie-keeping client of the UI, signed in as `user`."""
    async with httpx.AsyncClient(base_url=notify.url, timeout=20) as c:
        form = await c.get("/login")
        r = await c.post(
            "/login",
            data={"user_name": user, "password": PASSWORD, "csrf_token": csrf_of(form.text)},
        )
        assert r.status_code == 303, r.text
        yield c
