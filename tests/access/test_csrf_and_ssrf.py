"""CSRF on every UI form, and the webhook target guard against SSRF."""

from __future__ import annotations

import re

import httpx
import pytest
from access_kit import PUBLIC, all_routes, client, csrf_of, signed_in
from sqlalchemy import text
from ui_kit import PASSWORD, UiStack


def _fill(path: str, stack: UiStack) -> str:
    path = path.replace("{customer_id}", stack.customers["acme"]["id"])
    return re.sub(r"\{[^}]+\}", "zzz_0000000000000000", path)


async def _state(stack: UiStack) -> tuple[int, int]:
    async with stack.notify.engine.connect() as conn:
        actions = await conn.scalar(text("SELECT count(*) FROM ui_action"))
        sessions = await conn.scalar(text("SELECT count(*) FROM ui_session"))
    return int(actions or 0), int(sessions or 0)


async def test_every_ui_form_refuses_a_post_without_or_with_a_wrong_csrf_token(
    ui_stack: UiStack,
) -> None:
    posts = [
        r
        for r in all_routes(ui_stack.notify.app)
        if r.method == "POST" and not r.path.startswith("/v1/") and not PUBLIC.match(r.path)
    ]
    assert len(posts) >= 12  # actions, promises, responses, policies, logout, …
    # ada is an admin: every customer and the policies are hers, so only CSRF stands in the way.
    async with signed_in(ui_stack.notify, "ada") as ada:
        before = await _state(ui_stack)
        for route in posts:
            for data in ({}, {"csrf_token": "forged-" + "x" * 30}):
                r = await ada.post(_fill(route.path, ui_stack), data=data)
                assert r.status_code == 403, f"POST {route.path} {data}: {r.status_code}"
        assert await _state(ui_stack) == before  # no action sent, no session ended
        assert (await ada.get("/")).status_code == 200  # still signed in after /logout tries


async def test_the_sign_in_form_needs_its_double_submit_token(ui_stack: UiStack) -> None:
    async with httpx.AsyncClient(base_url=ui_stack.notify.url, timeout=20) as c:
        form = await c.get("/login")
        token = csrf_of(form.text)
        for data, cookies in (
            ({"csrf_token": token}, {}),  # the cookie missing (a cross-site post)
            ({"csrf_token": "forged"}, None),  # the wrong token
            ({}, None),
        ):
            if cookies is not None:
                c.cookies.clear()
            r = await c.post("/login", data={"user_name": "carol", "password": PASSWORD, **data})
            assert r.status_code == 403, data
            assert "dw_session" not in r.cookies
            form = await c.get("/login")
            token = csrf_of(form.text)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8001/hook",  # loopback
        "http://localhost/hook",  # a name resolving to loopback
        "http://2130706433/hook",  # 127.0.0.1 as one number
        "http://0x7f000001/hook",  # … in hex
        "http://[::1]/hook",
        "http://[::ffff:127.0.0.1]/hook",  # IPv4-mapped IPv6
        "http://169.254.169.254/latest/meta-data/",  # cloud metadata (link-local)
        "http://[fe80::1]/hook",
        "http://10.0.0.5/hook",  # private
        "http://172.16.3.4/hook",
        "http://192.168.1.10/hook",
        "http://100.64.0.1/hook",  # carrier-grade NAT
        "http://0.0.0.0/hook",
        "https://224.0.0.1/hook",  # multicast
        "file:///etc/passwd",
        "gopher://example.com/",
        "http://no-such-host.invalid/hook",  # does not resolve
    ],
)
async def test_webhook_endpoints_to_internal_targets_are_refused(
    ui_stack: UiStack, url: str
) -> None:
    assert not ui_stack.settings.webhook_allow_private
    async with client(ui_stack.notify) as admin:
        r = await admin.post("/v1/webhook-endpoints", json={"url": url})
        assert r.status_code == 422, f"{url}: {r.status_code} {r.text[:200]}"
        assert r.headers["content-type"].startswith("application/problem+json")
        assert r.json()["type"].endswith("/target-refused")
        listed = (await admin.get("/v1/webhook-endpoints")).json()
    assert url not in [e["url"] for e in listed]
