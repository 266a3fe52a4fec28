"""Rate limits: writes per token (429 problem+json with Retry-After) and failed sign-ins."""

from __future__ import annotations

import secrets

import pytest
from access_kit import client, csrf_of, mint
from duewise_service.ratelimit import RateLimitSettings, WriteRateLimiter
from sqlalchemy import text
from ui_kit import PASSWORD, UiStack


async def test_writes_beyond_a_tokens_budget_get_429_with_retry_after(ui_stack: UiStack) -> None:
    app = ui_stack.invoice.app
    saved = app.state.write_limiter
    app.state.write_limiter = WriteRateLimiter(rate_per_s=0.2, burst=3)
    a = await mint(ui_stack.invoice, role="service")
    b = await mint(ui_stack.invoice, role="service")
    try:
        async with client(ui_stack.invoice, a) as ca, client(ui_stack.invoice, b) as cb:

            async def create(c: object, name: str) -> int:
                r = await c.post(  # type: ignore[attr-defined]
                    "/v1/customers",
                    json={"name": name, "currency": "USD", "country": "US"},
                    headers={"Idempotency-Key": secrets.token_hex(8)},
                )
                return int(r.status_code)

            tag = secrets.token_hex(4)
            assert [await create(ca, f"rl-{tag}-{i}") for i in range(3)] == [201] * 3
            refused = await ca.post(
                "/v1/customers",
                json={"name": f"rl-{tag}-late", "currency": "USD", "country": "US"},
                headers={"Idempotency-Key": secrets.token_hex(8)},
            )
            assert refused.status_code == 429
            assert refused.headers["content-type"].startswith("application/problem+json")
            assert int(refused.headers["retry-after"]) >= 1
            assert "writes per second" in refused.json()["detail"]
            assert (await ca.get("/v1/customers", params={"limit": 1})).status_code == 200
            assert await create(cb, f"rl-{tag}-other") == 201  # the budget is per token
        async with ui_stack.invoice.engine.connect() as conn:
            late = await conn.scalar(
                text("SELECT count(*) FROM customer WHERE name = :n"), {"n": f"rl-{tag}-late"}
            )
        assert late == 0
    finally:
        app.state.write_limiter = saved


def test_the_default_lets_one_token_write_300_per_second_for_a_minute() -> None:
    limiter = WriteRateLimiter.from_settings(RateLimitSettings())
    for i in range(300 * 60):
        limiter.check("bench", now=1000.0 + i / 300)  # raises on a refusal


def test_a_burst_past_the_default_budget_is_refused() -> None:
    limiter = WriteRateLimiter.from_settings(RateLimitSettings())
    for _ in range(limiter.burst):
        limiter.check("runaway", now=50.0)
    with pytest.raises(Exception, match="writes per second") as err:
        limiter.check("runaway", now=50.0)
    assert err.value.status == 429  # type: ignore[attr-defined]


def test_the_limit_is_a_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DUEWISE_WRITE_RATE_PER_S", "5")
    monkeypatch.setenv("DUEWISE_WRITE_BURST", "7")
    limiter = WriteRateLimiter.from_settings()
    assert (limiter.rate_per_s, limiter.burst) == (5.0, 7)


async def test_failed_sign_ins_lock_the_user_out_for_the_window(ui_stack: UiStack) -> None:
    user = "locked-" + secrets.token_hex(3)
    await ui_stack.create_user(user)
    import httpx

    async with httpx.AsyncClient(base_url=ui_stack.notify.url, timeout=20) as c:

        async def attempt(password: str) -> httpx.Response:
            form = await c.get("/login")
            return await c.post(
                "/login",
                data={"user_name": user, "password": password, "csrf_token": csrf_of(form.text)},
            )

        for _ in range(ui_stack.ui.login_max_failures):
            assert (await attempt("wrong password!")).status_code == 401
        locked = await attempt(PASSWORD)  # the right one, too late
        assert locked.status_code == 429
        assert "Too many failed sign-ins" in locked.text
        assert "dw_session" not in locked.cookies
    async with ui_stack.notify.engine.begin() as conn:
        await conn.execute(text("DELETE FROM ui_login_failure WHERE user_name = :u"), {"u": user})
