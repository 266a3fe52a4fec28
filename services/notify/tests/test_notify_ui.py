"""The collector UI over HTTP (no browser): sign-in, CSRF, session expiry, the rate limit, who
may see which customer, and actions reaching the owning services with the user's own rights.
The real invoice, dunning, risk and notify apps run under uvicorn (see ui_kit)."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import re
import sys
from asyncio.subprocess import PIPE
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest
from notify.ui.accounts import hash_session_id
from notify.ui.sealing import SealError, seal, unseal
from notify.ui.views import WorkRow
from sqlalchemy import text
from ui_kit import ADMIN_TOKEN, PASSWORD, UiStack, ui_stack

__all__ = ["ui_stack"]  # the fixture, imported for the tests below

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_of(html: str) -> str:
    match = CSRF.search(html)
    assert match, "the page has no CSRF field"
    return match.group(1)


async def sign_in(c: httpx.AsyncClient, user: str, password: str = PASSWORD) -> httpx.Response:
    form = await c.get("/login")
    return await c.post(
        "/login",
        data={"user_name": user, "password": password, "csrf_token": csrf_of(form.text)},
    )


@asynccontextmanager
async def browser_like(stack: UiStack, user: str | None = None) -> AsyncIterator[httpx.AsyncClient]:
    """A cookie-keeping client of the notify server, signed in as `user` when given."""
    async with httpx.AsyncClient(base_url=stack.notify.url, timeout=20) as c:
        if user is not None:
            r = await sign_in(c, user)
            assert r.status_code == 303, r.text
        yield c


async def _clear_failures(stack: UiStack) -> None:
    async with stack.notify.engine.begin() as conn:
        await conn.execute(text("DELETE FROM ui_login_failure"))


async def test_sign_in_sets_a_strict_session_cookie_and_wrong_passwords_are_refused(
    ui_stack: UiStack,
) -> None:
    await _clear_failures(ui_stack)
    async with browser_like(ui_stack) as c:
        r = await c.get("/")
        assert r.status_code == 303
        assert r.headers["location"].startswith("/login?next=%2F")
        r = await sign_in(c, "carol", "not her password")
        assert r.status_code == 401
        assert "The user name or the password is wrong." in r.text
        r = await sign_in(c, "nobody", PASSWORD)
        assert r.status_code == 401
        r = await sign_in(c, "carol")
        assert r.status_code == 303
        assert r.headers["location"] == "/"
        cookie = r.headers["set-cookie"].lower()
        assert "dw_session=" in cookie
        assert "httponly" in cookie
        assert "samesite=lax" in cookie
        page = await c.get("/")
        assert page.status_code == 200
        assert "Content-Security-Policy" in page.headers
        # only a hash of the session id is stored
        raw = c.cookies["dw_session"]
        async with ui_stack.notify.engine.connect() as conn:
            stored = (await conn.execute(text("SELECT id_hash FROM ui_session"))).scalars().all()
        assert raw not in stored


async def test_sign_in_form_without_its_csrf_cookie_is_403(ui_stack: UiStack) -> None:
    async with browser_like(ui_stack) as c:
        form = await c.get("/login")
        token = csrf_of(form.text)
        c.cookies.clear()
        r = await c.post(
            "/login", data={"user_name": "carol", "password": PASSWORD, "csrf_token": token}
        )
        assert r.status_code == 403
        assert "sign-in form has expired" in r.text


async def test_posts_without_the_sessions_csrf_token_are_403_and_change_nothing(
    ui_stack: UiStack,
) -> None:
    acme = ui_stack.customers["acme"]["id"]
    async with browser_like(ui_stack, "carol") as c:
        for data in ({}, {"csrf_token": "forged"}):
            r = await c.post(
                f"/customers/{acme}/responses", data={**data, "reason": "forgot", "note": "x"}
            )
            assert r.status_code == 403
            assert "did not come from this site" in r.text
            assert "Traceback" not in r.text
        r = await c.post("/logout", data={})
        assert r.status_code == 403
    async with ui_stack.notify.engine.connect() as conn:
        n = await conn.scalar(text("SELECT count(*) FROM customer_response WHERE note = 'x'"))
    assert n == 0


async def test_a_session_idle_past_its_limit_is_over(ui_stack: UiStack) -> None:
    async with browser_like(ui_stack, "carol") as c:
        assert (await c.get("/")).status_code == 200
        idle = ui_stack.ui.session_idle_minutes + 1
        async with ui_stack.notify.engine.begin() as conn:
            await conn.execute(
                text(
                    "UPDATE ui_session SET last_seen_at = now() - make_interval(mins => :m) "
                    "WHERE id_hash = :h"
                ),
                {"m": idle, "h": hash_session_id(c.cookies["dw_session"])},
            )
        expired_id = c.cookies["dw_session"]
        r = await c.get("/")
        assert r.status_code == 303
        assert "expired=1" in r.headers["location"]
        login = await c.get(r.headers["location"])
        assert "Your session has expired" in login.text
        async with ui_stack.notify.engine.connect() as conn:
            left = await conn.scalar(
                text("SELECT count(*) FROM ui_session WHERE id_hash = :h"),
                {"h": hash_session_id(expired_id)},
            )
        assert left == 0  # deleted, not just refused


async def test_signing_out_ends_the_session(ui_stack: UiStack) -> None:
    async with browser_like(ui_stack, "carol") as c:
        page = await c.get("/")
        r = await c.post("/logout", data={"csrf_token": csrf_of(page.text)})
        assert r.status_code == 303
        assert (await c.get("/")).status_code == 303


async def test_five_failures_lock_the_user_name_for_the_window(ui_stack: UiStack) -> None:
    await _clear_failures(ui_stack)
    async with browser_like(ui_stack) as c:
        for _ in range(ui_stack.ui.login_max_failures):
            assert (await sign_in(c, "bob", "guess")).status_code == 401
        r = await sign_in(c, "bob")  # the right password, too late
        assert r.status_code == 429
        assert "Too many failed sign-ins" in r.text
        assert (await sign_in(c, "carol")).status_code == 303  # another user is not locked
    async with ui_stack.notify.engine.begin() as conn:
        await conn.execute(
            text(
                "UPDATE ui_login_failure SET at = at - make_interval(mins => :m) "
                "WHERE user_name = 'bob'"
            ),
            {"m": ui_stack.ui.login_window_minutes},
        )
    async with browser_like(ui_stack) as c:
        assert (await sign_in(c, "bob")).status_code == 303


async def test_a_collector_sees_and_acts_on_only_its_own_customers(ui_stack: UiStack) -> None:
    acme = ui_stack.customers["acme"]["id"]
    bobco = ui_stack.customers["bobco"]["id"]
    async with browser_like(ui_stack, "carol") as c:
        worklist = await c.get("/")
        assert "Acme Tools GmbH" in worklist.text
        assert "Bobco Ltd" not in worklist.text
        assert "Bobco Ltd" not in (await c.get("/", params={"owner": "bob"})).text
        r = await c.get(f"/customers/{bobco}")
        assert r.status_code == 404
        for sneaky in (f"{acme}%3Fowner%3Dbob", f"{bobco}%23", "%2E%2E"):
            assert (await c.get(f"/customers/{sneaky}")).status_code == 404
        assert "There is no such customer in your portfolio." in r.text
        assert "Bobco" not in r.text
        r = await c.post(
            f"/customers/{bobco}/promises",
            data={
                "csrf_token": csrf_of(worklist.text),
                "invoice_ids": ui_stack.invoices["bobco-1"]["id"],
                "amount": "10",
                "promised_date": (dt.date.today() + dt.timedelta(days=3)).isoformat(),
            },
        )
        assert r.status_code == 404
        assert (await c.get(f"/customers/{acme}")).status_code == 200
    async with ui_stack.dunning.engine.connect() as conn:
        promises = await conn.scalar(
            text("SELECT count(*) FROM promise WHERE customer_id = :c"), {"c": bobco}
        )
    assert promises == 0
    async with browser_like(ui_stack, "ada") as c:
        everyone = await c.get("/")
        assert "Acme Tools GmbH" in everyone.text
        assert "Bobco Ltd" in everyone.text
        only_bob = await c.get("/", params={"owner": "bob"})
        assert "Bobco Ltd" in only_bob.text
        assert "Acme Tools GmbH" not in only_bob.text
        assert (await c.get(f"/customers/{bobco}")).status_code == 200


async def test_a_logged_response_reaches_notify_under_the_users_own_token(
    ui_stack: UiStack,
) -> None:
    acme = ui_stack.customers["acme"]["id"]
    async with browser_like(ui_stack, "carol") as c:
        page = await c.get(f"/customers/{acme}")
        r = await c.post(
            f"/customers/{acme}/responses",
            data={
                "csrf_token": csrf_of(page.text),
                "reason": "cash_flow",
                "note": "waiting on a customer of theirs",
            },
        )
        assert r.status_code == 303
        page = await c.get(r.headers["location"])
        assert "Response logged." in page.text
        assert "Response: cash flow" in page.text
        assert "waiting on a customer of theirs" in page.text
    async with ui_stack.notify.engine.connect() as conn:
        row = (
            await conn.execute(
                text("SELECT logged_by, source FROM customer_response WHERE customer_id = :c"),
                {"c": acme},
            )
        ).one()
        audit = (
            await conn.execute(
                text("SELECT user_name, service, status FROM ui_action WHERE kind = 'response'")
            )
        ).all()
    assert row.logged_by == "ui:carol"  # the user's own notify token, not the admin's
    assert row.source == "collector"
    assert [(a.user_name, a.service, a.status) for a in audit] == [("carol", "notify", 201)]


async def test_a_bad_promise_is_one_sentence_on_the_page(ui_stack: UiStack) -> None:
    acme = ui_stack.customers["acme"]["id"]
    async with browser_like(ui_stack, "carol") as c:
        page = await c.get(f"/customers/{acme}")
        base = {
            "csrf_token": csrf_of(page.text),
            "invoice_ids": ui_stack.invoices["acme-overdue"]["id"],
        }
        r = await c.post(
            f"/customers/{acme}/promises",
            data={**base, "amount": "12.345", "promised_date": "2099-01-01"},
        )
        assert r.status_code == 422
        assert "at most 2 decimals for USD" in r.text
        r = await c.post(
            f"/customers/{acme}/promises",
            data={**base, "amount": "100", "promised_date": "2001-01-01"},
        )
        assert r.status_code == 422  # dunning refuses a date in the past
        assert "The dunning service refused it: promised_date: must not be in the past." in r.text
        assert "problem+json" not in r.text


async def test_a_service_that_is_down_is_a_sentence_not_a_stack_trace(ui_stack: UiStack) -> None:
    from notify.main import create_app
    from notify.ui import UiSettings, install_ui
    from ui_kit import free_port

    dead = f"http://127.0.0.1:{free_port()}"
    app = create_app(ui_stack.settings)
    install_ui(app, ui_stack.settings, UiSettings(dunning_api_url=dead, risk_api_url=dead))
    acme = ui_stack.customers["acme"]["id"]
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://ui") as c,
    ):
        assert (await sign_in(c, "carol")).status_code == 303
        page = await c.get(f"/customers/{acme}")
        assert page.status_code == 200  # the invoice side still shows
        assert "The dunning service cannot be reached right now." in page.text
        assert "The risk service cannot be reached right now." in page.text
        assert "A-1001" in page.text
        worklist = await c.get("/")
        assert "The risk service cannot be reached right now." in worklist.text


def test_sealed_tokens_round_trip_and_refuse_tampering_or_another_key() -> None:
    sealed = seal("key one", "dw_secret-token")
    assert "dw_secret-token" not in sealed
    assert unseal("key one", sealed) == "dw_secret-token"
    assert seal("key one", "dw_secret-token") != sealed  # a fresh nonce each time
    with pytest.raises(SealError):
        unseal("key two", sealed)
    body = bytearray(sealed.encode())
    body[10] = ord("A") if body[10] != ord("A") else ord("B")
    with pytest.raises(SealError):
        unseal("key one", body.decode())


async def test_user_tokens_are_stored_sealed(ui_stack: UiStack) -> None:
    async with ui_stack.notify.engine.connect() as conn:
        tokens = (
            await conn.execute(text("SELECT api_tokens FROM ui_user WHERE user_name = 'carol'"))
        ).scalar_one()
    assert set(tokens) >= {"invoice", "dunning", "notify"}
    assert all(v.startswith("v1.") and "dw_" not in v for v in tokens.values())


@pytest.mark.timeout(300)  # two Python processes start, on a busy machine
async def test_the_users_cli_creates_and_disables_a_user(ui_stack: UiStack) -> None:
    env = {
        **os.environ,
        "NOTIFY_DATABASE_URL": ui_stack.settings.database_url,
        "DUEWISE_ADMIN_TOKEN": ADMIN_TOKEN,
        "INVOICE_API_URL": ui_stack.invoice.url,
        "DUNNING_API_URL": ui_stack.dunning.url,
        "RISK_API_URL": ui_stack.risk.url,
    }
    command = [sys.executable, "-m", "notify.ui.users", "create", "dana", "--role", "collector"]
    with pytest.raises(ValueError, match="at least 8 characters"):
        await ui_stack.create_user("dana", password="short")
    proc = await asyncio.create_subprocess_exec(
        *command, "--password", PASSWORD, env=env, stdout=PIPE, stderr=PIPE
    )
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    assert b"created collector 'dana'" in out
    async with browser_like(ui_stack, "dana") as c:
        page = await c.get("/")
        assert page.status_code == 200
        assert "No customers to work." in page.text  # dana owns none yet
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "notify.ui.users", "disable", "dana", env=env, stdout=PIPE
        )
        out, _ = await proc.communicate()
        assert proc.returncode == 0
        assert b"disabled 'dana'" in out
        assert (await c.get("/")).status_code == 303  # signed out at once
        assert (await sign_in(c, "dana")).status_code == 401


def _row(name: str, band: str | None, overdue: int, **kw: bool) -> WorkRow:
    return WorkRow(
        id=name,
        name=name,
        owner="carol",
        currency="USD",
        band=band,
        score=None,
        overdue=overdue,
        open=overdue,
        stage=None,
        on_hold=False,
        broken_promises=0,
        disputed=kw.get("disputed", False),
        promise_pending=kw.get("promise_pending", False),
    )


def test_worklist_order_is_band_then_overdue_with_disputes_and_promises_last() -> None:
    rows = [
        _row("low-big", "low", 90_000),
        _row("high-small", "high", 100),
        _row("critical-disputed", "critical", 50_000, disputed=True),
        _row("high-big", "high", 5_000),
        _row("unscored", None, 1_000_000),
        _row("critical-promised", "critical", 70_000, promise_pending=True),
    ]
    assert [r.name for r in sorted(rows, key=WorkRow.sort_key)] == [
        "high-big",
        "high-small",
        "low-big",
        "unscored",
        "critical-promised",
        "critical-disputed",
    ]


async def test_a_promise_form_sent_twice_makes_one_promise(ui_stack: UiStack) -> None:
    bobco = ui_stack.customers["bobco"]["id"]
    async with browser_like(ui_stack, "bob") as c:
        page = await c.get(f"/customers/{bobco}")
        key = re.search(r'name="idempotency_key" value="([^"]+)"', page.text)
        assert key
        form = {
            "csrf_token": csrf_of(page.text),
            "idempotency_key": key.group(1),
            "invoice_ids": ui_stack.invoices["bobco-1"]["id"],
            "amount": "500",
            "promised_date": (dt.date.today() + dt.timedelta(days=5)).isoformat(),
        }
        first = await c.post(f"/customers/{bobco}/promises", data=form)
        second = await c.post(f"/customers/{bobco}/promises", data=form)
        assert first.status_code == second.status_code == 303
        shown = await c.get(first.headers["location"])
        assert shown.text.count("Promise to pay by") == 1
    async with ui_stack.dunning.engine.connect() as conn:
        n = await conn.scalar(
            text("SELECT count(*) FROM promise WHERE customer_id = :c"), {"c": bobco}
        )
    assert n == 1


async def test_a_cut_customer_list_says_so(
    ui_stack: UiStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    from notify.ui import clients

    monkeypatch.setattr(clients, "PAGE_SIZE", 1)
    monkeypatch.setattr(clients, "MAX_PAGES", 1)
    async with browser_like(ui_stack, "ada") as c:
        page = await c.get("/")
    assert page.status_code == 200
    assert "This list is incomplete: only the first 1 customers of the book were read." in page.text
