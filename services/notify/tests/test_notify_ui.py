"""The collector UI over HTTP (no browser): sign-in, CSRF, session expiry, the rate limit, who
may see which customer, and actions reaching the owning services with the user's own rights.
The real invoice, dunning, risk and notify apps run under uvicorn (see ui_kit)."""

from __future__ import annotations

import asyncio
import datetime as dt
import html
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
from sqlalchemy import text
from ui_kit import ADMIN_TOKEN, PASSWORD, UiStack, ui_stack

__all__ = ["ui_stack"]  # the fixture, imported for the tests below

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
ROW_NAME = re.compile(r'<td><a href="/customers/[^"]+">([^<]+)</a></td>')
NEXT_PAGE = re.compile(r'<a rel="next" href="([^"]+)">Next page</a>')


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
                text(
                    "SELECT logged_by, source FROM customer_response "
                    "WHERE customer_id = :c AND reason = 'cash_flow'"
                ),
                {"c": acme},
            )
        ).one()
        audit = (
            await conn.execute(
                text(
                    "SELECT user_name, service, status FROM ui_action "
                    "WHERE kind = 'response' AND request->>'reason' = 'cash_flow'"
                )
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
        assert (
            "The dunning stage could not be loaded: the dunning service cannot be reached right "
            "now. Reload to try again."
        ) in page.text
        assert (
            "The risk score could not be loaded: the risk service cannot be reached right now. "
            "Reload to try again."
        ) in page.text
        assert "A-1001" in page.text
        worklist = await c.get("/")
        assert "The risk service cannot be reached right now." in worklist.text


async def test_unknown_pages_and_failures_are_a_plain_sentence_never_a_trace(
    ui_stack: UiStack,
) -> None:
    from notify.main import create_app
    from notify.ui import install_ui

    async with browser_like(ui_stack, "carol") as c:
        page = await c.get("/no/such/page")
        assert page.status_code == 404
        assert page.headers["content-type"].startswith("text/html")
        assert "There is no such page here" in page.text
        api = await c.get("/v1/no-such-thing")  # the API keeps its problem documents
        assert api.status_code == 404
        assert api.headers["content-type"].startswith("application/problem+json")

    # A page that fails in a way nobody planned for: the same app, with one route that raises.
    app = create_app(ui_stack.settings)
    install_ui(app, ui_stack.settings, ui_stack.ui)

    async def broken() -> None:
        raise RuntimeError("internal detail that belongs in the log only")

    app.add_api_route("/broken", broken)
    app.add_api_route("/v1/broken", broken)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app, raise_app_exceptions=False),
            base_url="http://ui",
        ) as c,
    ):
        r = await c.get("/broken")
        assert r.status_code == 500
        assert r.headers["content-type"].startswith("text/html")
        assert "Something went wrong on our side while preparing this page" in r.text
        assert "internal detail" not in r.text
        assert "Traceback" not in r.text
        api = await c.get("/v1/broken")  # the API's own catch-all still answers its paths
        assert api.status_code == 500
        assert "text/html" not in api.headers["content-type"]
        assert "internal detail" not in api.text


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
    assert set(tokens) >= {"invoice", "dunning", "risk", "notify"}  # risk mints tokens too
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


async def test_the_worklist_pages_through_the_book_in_working_order(
    ui_stack: UiStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    from notify.ui import worklist

    monkeypatch.setattr(worklist, "PAGE_ROWS", 1)
    names: list[str] = []
    async with browser_like(ui_stack, "ada") as c:
        page = await c.get("/")
        for _ in range(10):
            assert page.status_code == 200
            rows = ROW_NAME.findall(page.text)
            assert len(rows) == 1
            names += rows
            nxt = NEXT_PAGE.search(page.text)
            if nxt is None:
                break
            page = await c.get(html.unescape(nxt.group(1)))
        assert "First page" in page.text
    # Bobco owes more (9,999.00 overdue against 1,250.00): it comes first for the admin.
    assert names == ["Bobco Ltd", "Acme Tools GmbH"]


# --- the customer page's other actions ------------------------------------------------------


async def _audit(stack: UiStack, kind: str) -> list[tuple[str, str, int]]:
    async with stack.notify.engine.connect() as conn:
        rows = (
            await conn.execute(
                text(
                    "SELECT user_name, service, status FROM ui_action WHERE kind = :k ORDER BY at"
                ),
                {"k": kind},
            )
        ).all()
    return [(r.user_name, r.service, r.status) for r in rows]


async def test_a_dispute_is_opened_and_resolved_with_the_invoice_service(
    ui_stack: UiStack,
) -> None:
    acme = ui_stack.customers["acme"]["id"]
    current = ui_stack.invoices["acme-current"]
    async with browser_like(ui_stack, "carol") as c:
        page = await c.get(f"/customers/{acme}")
        token = csrf_of(page.text)
        r = await c.post(
            f"/customers/{acme}/disputes",
            data={"csrf_token": token, "invoice_id": current["id"], "reason": "wrong quantity"},
        )
        assert r.status_code == 303, r.text
        page = await c.get(r.headers["location"])
        assert "Dispute opened" in page.text
        assert "Dispute opened on A-1002" in page.text  # the timeline
        match = re.search(rf'action="/customers/{acme}/disputes/(dsp_[^/"]+)/resolve"', page.text)
        assert match, "no resolve form for the open dispute"
        async with ui_stack.admin(ui_stack.invoice) as inv:
            dispute = (await inv.get(f"/v1/disputes/{match.group(1)}")).json()
        assert (dispute["status"], dispute["reason"]) == ("open", "wrong quantity")
        # A second dispute on the same invoice: the invoice service's refusal, as a sentence.
        r = await c.post(
            f"/customers/{acme}/disputes",
            data={"csrf_token": token, "invoice_id": current["id"], "reason": "again"},
        )
        assert r.status_code == 422
        assert "The invoice service refused it: invoice" in r.text
        assert "already has an open dispute." in r.text
        r = await c.post(
            f"/customers/{acme}/disputes/{match.group(1)}/resolve",
            data={"csrf_token": token, "outcome": "customer_wrong", "note": "checked the POD"},
        )
        assert r.status_code == 303, r.text
        page = await c.get(r.headers["location"])
        assert "Dispute on A-1002 resolved: customer wrong" in page.text
        assert f"/disputes/{match.group(1)}/resolve" not in page.text
        async with ui_stack.admin(ui_stack.invoice) as inv:
            dispute = (await inv.get(f"/v1/disputes/{match.group(1)}")).json()
        assert (dispute["status"], dispute["outcome"]) == ("resolved", "customer_wrong")
    assert await _audit(ui_stack, "dispute_open") == [
        ("carol", "invoice", 201),
        ("carol", "invoice", 422),
    ]
    assert await _audit(ui_stack, "dispute_resolve") == [("carol", "invoice", 200)]


async def test_dunning_is_paused_until_a_date_and_resumed(ui_stack: UiStack) -> None:
    acme = ui_stack.customers["acme"]["id"]
    resume_on = (dt.date.today() + dt.timedelta(days=14)).isoformat()
    async with browser_like(ui_stack, "carol") as c:
        token = csrf_of((await c.get(f"/customers/{acme}")).text)
        r = await c.post(
            f"/customers/{acme}/pauses",
            data={"csrf_token": token, "target": "customer", "reason": "", "resume_on": resume_on},
        )
        assert r.status_code == 422
        assert "Say why dunning is paused." in r.text
        r = await c.post(
            f"/customers/{acme}/pauses",
            data={"csrf_token": token, "reason": "CFO on leave", "resume_on": "2001-01-01"},
        )
        assert "Give a resume date after today." in r.text
        r = await c.post(
            f"/customers/{acme}/pauses",
            data={"csrf_token": token, "reason": "CFO on leave", "resume_on": resume_on},
        )
        assert r.status_code == 303, r.text
        page = await c.get(r.headers["location"])
        assert "Paused the whole customer" in page.text
        assert f"until {resume_on}: CFO on leave" in page.text
        match = re.search(rf'action="/customers/{acme}/pauses/([^/"]+)/resume"', page.text)
        assert match
        pause_id = match.group(1)
        async with ui_stack.dunning.engine.connect() as conn:
            row = (
                await conn.execute(
                    text("SELECT customer_id, created_by, lifted_at FROM pause WHERE id = :p"),
                    {"p": pause_id},
                )
            ).one()
        assert (row.customer_id, row.created_by, row.lifted_at) == (acme, "ui:carol", None)
        r = await c.post(f"/customers/{acme}/pauses/pau_nope/resume", data={"csrf_token": token})
        assert r.status_code == 422
        assert "There is no such pause here." in r.text
        r = await c.post(f"/customers/{acme}/pauses/{pause_id}/resume", data={"csrf_token": token})
        assert r.status_code == 303, r.text
        page = await c.get(r.headers["location"])
        assert "Dunning resumed" in page.text
        assert f"/pauses/{pause_id}/resume" not in page.text
    async with ui_stack.dunning.engine.connect() as conn:
        lifted = await conn.scalar(
            text("SELECT lifted_at FROM pause WHERE id = :p"), {"p": pause_id}
        )
    assert lifted is not None
    assert await _audit(ui_stack, "resume") == [("carol", "dunning", 204)]


async def test_a_credit_hold_is_placed_and_released(ui_stack: UiStack) -> None:
    acme = ui_stack.customers["acme"]["id"]

    async def on_hold() -> bool:
        async with ui_stack.admin(ui_stack.dunning) as dun:
            return bool((await dun.get(f"/v1/customers/{acme}/stage")).json()["on_hold"])

    async with browser_like(ui_stack, "carol") as c:
        token = csrf_of((await c.get(f"/customers/{acme}")).text)
        r = await c.post(f"/customers/{acme}/credit-hold", data={"csrf_token": token})
        assert r.status_code == 422
        assert "Give a reason for the credit hold." in r.text
        r = await c.post(
            f"/customers/{acme}/credit-hold", data={"csrf_token": token, "reason": "90 days late"}
        )
        assert r.status_code == 303, r.text
        page = await c.get(r.headers["location"])
        assert "Credit hold placed." in page.text
        assert "Release credit hold" in page.text
        assert await on_hold()
        r = await c.post(
            f"/customers/{acme}/credit-hold/release",
            data={"csrf_token": token, "reason": "paid in part"},
        )
        assert r.status_code == 303, r.text
        page = await c.get(r.headers["location"])
        assert "Credit hold released." in page.text
        assert "Place credit hold" in page.text
    assert not await on_hold()
    assert await _audit(ui_stack, "hold_place") == [("carol", "dunning", 200)]


async def test_a_manual_message_is_previewed_then_queued_with_notify(ui_stack: UiStack) -> None:
    acme = ui_stack.customers["acme"]["id"]
    overdue = ui_stack.invoices["acme-overdue"]["id"]
    async with browser_like(ui_stack, "carol") as c:
        page = await c.get(f"/customers/{acme}", params={"template": "payment_plan"})
        assert "A payment plan for your overdue balance" in page.text
        form = {
            "csrf_token": csrf_of(page.text),
            "template": "payment_plan",
            "channel": "email",
            "subject": "About A-1001",
            "body": "Hello <b>Pat</b>,\n\nCould we agree on instalments?",
            "invoice_ids": overdue,
        }
        r = await c.post(f"/customers/{acme}/messages/preview", data=form)
        assert r.status_code == 200, r.text
        assert 'id="message-preview"' in r.text
        assert 'sandbox=""' in r.text
        # the email's HTML is an attribute of the sandboxed frame, escaped: never page markup
        assert "&lt;b&gt;Pat" in r.text or "&amp;lt;b&amp;gt;Pat" in r.text
        assert "<b>Pat</b>" not in r.text
        assert "'sha256-" in r.headers["content-security-policy"]
        assert "unsafe-inline" not in r.headers["content-security-policy"]
        r = await c.post(f"/customers/{acme}/messages", data={**form, "subject": ""})
        assert r.status_code == 422
        assert "The notify service refused it: subject: an email needs a subject." in r.text
        r = await c.post(f"/customers/{acme}/messages", data=form)
        assert r.status_code == 303, r.text
        assert "Message queued" in (await c.get(r.headers["location"])).text
    async with ui_stack.notify.engine.connect() as conn:
        row = (
            await conn.execute(
                text(
                    "SELECT kind, channel, created_by, data FROM message "
                    "WHERE customer_id = :c AND kind = 'manual'"
                ),
                {"c": acme},
            )
        ).one()
    assert (row.kind, row.channel, row.created_by) == ("manual", "email", "ui:carol")
    assert row.data["subject"] == "About A-1001"
    assert await _audit(ui_stack, "message") == [("carol", "notify", 422), ("carol", "notify", 202)]


async def test_a_collector_fixes_the_billing_contact_of_its_own_customer(
    ui_stack: UiStack,
) -> None:
    bobco = ui_stack.customers["bobco"]["id"]
    rows = {
        "contact-0-name": "Pat Payables",
        "contact-0-email": "payables@bobco.example",
        "contact-0-role": "billing",
        "contact-1-name": "Chris Chief",
        "contact-1-email": "ceo@bobco.example",
        "contact-1-role": "primary",
    }
    async with browser_like(ui_stack, "bob") as c:
        token = csrf_of((await c.get(f"/customers/{bobco}")).text)
        r = await c.post(
            f"/customers/{bobco}/contacts",
            data={"csrf_token": token, **rows, "contact-0-role": "other"},
        )
        assert "Keep one contact as the billing contact." in r.text
        r = await c.post(
            f"/customers/{bobco}/contacts",
            data={"csrf_token": token, **rows, "contact-0-email": "not an address"},
        )
        assert r.status_code == 422
        assert "The invoice service refused it: contacts/0/email:" in r.text
        # Bob's own token (contacts:write, his portfolio only) makes the change.
        r = await c.post(f"/customers/{bobco}/contacts", data={"csrf_token": token, **rows})
        assert r.status_code == 303, r.text
        assert "Contacts saved." in (await c.get(r.headers["location"])).text
    async with ui_stack.admin(ui_stack.invoice) as inv:
        contacts = (await inv.get(f"/v1/customers/{bobco}")).json()["contacts"]
    assert [(x["email"], x["role"]) for x in contacts] == [
        ("payables@bobco.example", "billing"),
        ("ceo@bobco.example", "primary"),
    ]
    assert await _audit(ui_stack, "contacts") == [("bob", "invoice", 422), ("bob", "invoice", 200)]


async def test_a_collector_cannot_act_on_another_collectors_customer(ui_stack: UiStack) -> None:
    bobco = ui_stack.customers["bobco"]["id"]
    invoice = ui_stack.invoices["bobco-1"]["id"]
    async with browser_like(ui_stack, "carol") as c:
        token = csrf_of((await c.get("/")).text)
        for path, data in (
            ("disputes", {"invoice_id": invoice, "reason": "x"}),
            ("disputes/dsp_x/resolve", {"outcome": "settled"}),
            ("pauses", {"reason": "x", "resume_on": "2099-01-01"}),
            ("pauses/pau_x/resume", {}),
            ("credit-hold", {"reason": "x"}),
            ("credit-hold/release", {"reason": "x"}),
            ("messages/preview", {"subject": "x", "body": "x"}),
            ("messages", {"subject": "x", "body": "x"}),
            ("contacts", {"contact-0-name": "x", "contact-0-email": "x@x.example"}),
        ):
            r = await c.post(f"/customers/{bobco}/{path}", data={"csrf_token": token, **data})
            assert r.status_code == 404, path
            assert "There is no such customer in your portfolio." in r.text
    async with ui_stack.notify.engine.connect() as conn:
        n = await conn.scalar(
            text("SELECT count(*) FROM ui_action WHERE customer_id = :c AND user_name = 'carol'"),
            {"c": bobco},
        )
    assert n == 0


# --- caught mail and SMS --------------------------------------------------------------------

STYLED = (
    "<!DOCTYPE html><html><head><style>body { color: #123456; }</style></head>"
    "<body><p>Dear customer,</p><script>alert('x')</script></body></html>"
)


async def test_caught_mail_shows_a_collector_only_its_customers_mail(
    ui_stack: UiStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    from duewise_dev.catcher import CaughtSms
    from ui_kit import catch_mail

    assert ui_stack.catcher is not None
    mine = catch_mail(ui_stack, "ap@acme.example", "Invoice A-1001", STYLED, b"%PDF-1.4 fake")
    theirs = catch_mail(ui_stack, "ceo@bobco.example", "Invoice B-2001 for Bobco", STYLED)
    ui_stack.catcher.store.sms.append(
        CaughtSms(
            sid="SMtest",
            account_sid="AC1",
            to="+15550100",
            from_="+15550199",
            body="Reminder: B-2001 is overdue",
            received=dt.datetime.now(dt.UTC),
            idempotency_key=None,
        )
    )
    async with browser_like(ui_stack, "carol") as c:
        page = await c.get("/mail")
        assert page.status_code == 200, page.text
        assert "Invoice A-1001" in page.text
        assert "Invoice B-2001 for Bobco" not in page.text
        assert "Reminder: B-2001" not in page.text  # not to a contact of carol's customers
        shown = await c.get("/mail", params={"id": mine})
        assert 'sandbox=""' in shown.text
        assert "&lt;script&gt;" in shown.text  # only ever inside the escaped srcdoc
        assert "<script>alert" not in shown.text
        csp = shown.headers["content-security-policy"]
        assert "style-src 'self' 'sha256-" in csp
        assert "script-src 'self';" in csp
        assert "Plain text of Invoice A-1001" in shown.text
        link = re.search(rf'href="(/mail/{mine}/attachments/0)"', shown.text)
        assert link, "no attachment link"
        assert "invoice A-1001.pdf" in shown.text
        pdf = await c.get(link.group(1))
        assert pdf.status_code == 200
        assert pdf.content == b"%PDF-1.4 fake"
        assert pdf.headers["content-disposition"].startswith("attachment;")
        assert pdf.headers["x-content-type-options"] == "nosniff"
        for path in (f"/mail?id={theirs}", f"/mail/{theirs}/attachments/0"):
            r = await c.get(path)
            assert r.status_code == 404
            assert "The mail catcher no longer holds this message." in r.text
    async with browser_like(ui_stack, "ada") as c:
        page = await c.get("/mail")
        assert "Invoice B-2001 for Bobco" in page.text
        assert "Reminder: B-2001 is overdue" in page.text
        state = ui_stack.notify.app.state.ui
        monkeypatch.setattr(state.ui, "catcher_url", "http://127.0.0.1:9")
        r = await c.get("/mail")
        assert r.status_code == 502
        assert "The mail catcher at http://127.0.0.1:9 cannot be reached" in r.text
        assert "Traceback" not in r.text


# --- dashboards -----------------------------------------------------------------------------


async def test_dashboards_draw_each_chart_with_its_table_and_csv(
    ui_stack: UiStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with browser_like(ui_stack, "carol") as c:
        page = await c.get("/dashboards")
        assert page.status_code == 200, page.text
        for key in ("aging", "dso", "cei", "at-risk", "reasons", "step-recovery"):
            assert f'id="{key}"' in page.text
            assert f'href="/dashboards/{key}.csv"' in page.text
        assert page.text.count('<svg class="chart"') >= 4
        assert "$11,729.00" in page.text  # aging total: A-1001, A-1002 and B-2001
        assert "style=" not in page.text  # nothing the page's CSP would block
        csv_text = (await c.get("/dashboards/aging.csv")).text
        lines = csv_text.splitlines()
        assert lines[0] == "currency,as_of,current,1_30,31_60,61_90,over_90,total"
        assert lines[1].startswith("USD,")
        assert lines[1].endswith(",1172900")
        reasons = await c.get("/dashboards/reasons.csv")
        assert reasons.headers["content-disposition"] == 'attachment; filename="reasons.csv"'
        assert ",cash_flow," in reasons.text
        r = await c.get("/dashboards/nope.csv")
        assert r.status_code == 404
        assert "There is no such chart." in r.text
        services = ui_stack.notify.app.state.ui.services
        monkeypatch.setitem(services.urls, "risk", "http://127.0.0.1:9")
        page = await c.get("/dashboards")  # within the minute: the charts computed above
        assert page.status_code == 200
        assert "$11,729.00" in page.text
        ui_stack.notify.app.state.dashboard_cache.clear()  # as the minute passing does
        page = await c.get("/dashboards")
        assert page.status_code == 200
        assert "The risk service cannot be reached right now." in page.text
        assert ",cash_flow," in (await c.get("/dashboards/reasons.csv")).text
        r = await c.get("/dashboards/aging.csv")
        assert r.status_code == 502
        assert "The risk service cannot be reached right now." in r.text


# --- policies (admins) ----------------------------------------------------------------------


async def test_an_admin_edits_a_policy_with_validation_and_previews_its_timeline(
    ui_stack: UiStack,
) -> None:
    import json

    from dunning.domain.policy import DEFAULT_POLICY

    spec = DEFAULT_POLICY.model_dump(mode="json")
    async with ui_stack.admin(ui_stack.dunning) as dun:
        r = await dun.post(
            "/v1/policies",
            json={"name": "Standard B2B", "spec": spec, "segment_tags": ["ui-test-only"]},
            headers={"Idempotency-Key": "ui-policy-1"},
        )
        assert r.status_code == 201, r.text
        policy_id = r.json()["id"]
    async with browser_like(ui_stack, "carol") as c:
        r = await c.get("/policies")
        assert r.status_code == 403
        assert "Only an admin can view and edit dunning policies." in r.text
        assert (await c.get(f"/policies/{policy_id}")).status_code == 403
    async with browser_like(ui_stack, "ada") as c:
        listing = await c.get("/policies")
        assert listing.status_code == 200
        assert "Standard B2B" in listing.text
        page = await c.get(f"/policies/{policy_id}")
        assert page.status_code == 200
        assert "&#34;steps&#34;" in page.text or "&quot;steps&quot;" in page.text
        base = {"csrf_token": csrf_of(page.text), "name": "Standard B2B"}
        overdue = ui_stack.invoices["acme-overdue"]["id"]
        r = await c.post(
            f"/policies/{policy_id}",
            data={**base, "spec": json.dumps(spec), "invoice_id": overdue, "action": "preview"},
        )
        assert r.status_code == 200, r.text
        assert "Timeline of A-1001" in r.text
        assert spec["steps"][-1]["key"] in r.text
        r = await c.post(
            f"/policies/{policy_id}",
            data={**base, "spec": json.dumps(spec), "invoice_id": "", "action": "preview"},
        )
        assert "Choose an invoice by its id" in r.text
        r = await c.post(
            f"/policies/{policy_id}", data={**base, "spec": '{"steps": [', "action": "save"}
        )
        assert r.status_code == 422
        assert "The spec is not valid JSON: line 1, column 12" in r.text
        bad = {**spec, "steps": [{**spec["steps"][0], "template": "nope"}, *spec["steps"][1:]]}
        r = await c.post(
            f"/policies/{policy_id}", data={**base, "spec": json.dumps(bad), "action": "save"}
        )
        assert r.status_code == 422
        assert "The dunning service refused it." in r.text
        assert "spec/steps/0/template:" in r.text
        assert "unknown template &#39;nope&#39;" in r.text
        r = await c.post(
            f"/policies/{policy_id}",
            data={**base, "name": "Standard B2B v2", "spec": json.dumps(spec), "action": "save"},
        )
        assert r.status_code == 303, r.text
        saved = await c.get(r.headers["location"])
        assert "Policy saved as version 2." in saved.text
    async with ui_stack.admin(ui_stack.dunning) as dun:
        stored = (await dun.get(f"/v1/policies/{policy_id}")).json()
    assert (stored["name"], stored["version"], stored["segment_tags"]) == (
        "Standard B2B v2",
        2,
        ["ui-test-only"],
    )
    assert await _audit(ui_stack, "policy_update") == [
        ("ada", "dunning", 422),
        ("ada", "dunning", 200),
    ]
    async with ui_stack.notify.engine.connect() as conn:
        subjects = (
            await conn.execute(
                text(
                    "SELECT DISTINCT subject_kind, subject_id, customer_id FROM ui_action "
                    "WHERE kind = 'policy_update'"
                )
            )
        ).all()
    assert [tuple(r) for r in subjects] == [("policy", policy_id, None)]


async def test_pauses_and_disputes_made_outside_the_ui_show_and_the_dispute_resolves(
    ui_stack: UiStack,
) -> None:
    bobco = ui_stack.customers["bobco"]["id"]
    invoice = ui_stack.invoices["bobco-1"]["id"]
    async with ui_stack.admin(ui_stack.invoice) as inv:
        r = await inv.post(
            f"/v1/invoices/{invoice}/disputes",
            json={"reason": "goods damaged", "note": "from the ERP"},
            headers={"Idempotency-Key": "erp-dispute-1"},
        )
        assert r.status_code == 201, r.text
        dispute_id = r.json()["id"]
    await ui_stack.feed_events()  # dunning pauses the invoice for the dispute
    async with browser_like(ui_stack, "bob") as c:
        page = await c.get(f"/customers/{bobco}")
        assert page.status_code == 200
        pauses = page.text[page.text.index('id="pause-form"') : page.text.index('id="hold-form"')]
        assert '<span class="tag">dispute</span>' in pauses
        assert "Lifted by dunning when the dispute is over." in pauses
        assert "/resume" not in pauses  # only manual pauses are resumed by hand
        assert f'action="/customers/{bobco}/disputes/{dispute_id}/resolve"' in page.text
        r = await c.post(
            f"/customers/{bobco}/disputes/{dispute_id}/resolve",
            data={"csrf_token": csrf_of(page.text), "outcome": "settled"},
        )
        assert r.status_code == 303, r.text
    async with ui_stack.admin(ui_stack.invoice) as inv:
        assert (await inv.get(f"/v1/disputes/{dispute_id}")).json()["status"] == "resolved"


async def test_a_promise_recorded_by_another_system_shows_and_pushes_the_customer_down(
    ui_stack: UiStack,
) -> None:
    acme = ui_stack.customers["acme"]["id"]
    promised = (dt.date.today() + dt.timedelta(days=6)).isoformat()
    async with ui_stack.admin(ui_stack.dunning) as dun:
        r = await dun.post(
            "/v1/promises",
            json={
                "customer_id": acme,
                "invoice_ids": [ui_stack.invoices["acme-overdue"]["id"]],
                "amount": 1_000_00,
                "promised_date": promised,
            },
            headers={"Idempotency-Key": "erp-promise-1"},
        )
        assert r.status_code == 201, r.text
    async with browser_like(ui_stack, "carol") as c:
        page = await c.get(f"/customers/{acme}")
        assert f"Promise to pay by {promised}" in page.text
        assert "recorded by another system" in page.text
        assert f"Paused on A-1001 until {promised} (promise to pay)" in page.text
        worklist = await c.get("/")
        row = worklist.text[worklist.text.index("Acme Tools GmbH") :]
        assert "promise pending" in row[: row.index("</tr>")]
