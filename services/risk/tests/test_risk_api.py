"""The HTTP API: tokens required (except health), profile, score, signals, worklist paging."""

from __future__ import annotations

import datetime as dt

import httpx
from fastapi import FastAPI
from risk_kit import Script, d, feed
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

DAY = dt.timedelta(days=1)


async def test_everything_but_health_needs_a_token(risk_app: FastAPI) -> None:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=risk_app), base_url="http://risk.test"
    ) as anon:
        assert (await anon.get("/healthz")).status_code == 200
        assert (await anon.get("/readyz")).status_code == 200
        for path in (
            "/v1/customers/cus_x/profile",
            "/v1/customers/cus_x/score",
            "/v1/customers/cus_x/signals",
            "/v1/signals?open=true",
            "/v1/scores",
            "/v1/analytics/dso",
            "/v1/analytics/cei?from=2026-01-01&to=2026-01-31",
            "/v1/analytics/aging?format=csv",
        ):
            r = await anon.get(path)
            assert r.status_code == 401, path
            assert r.headers["content-type"].startswith("application/problem+json")
        r = await anon.get("/v1/scores", headers={"Authorization": "Bearer nope"})
        assert r.status_code == 401


def _switcher() -> Script:
    s = Script(credit_limit=5000_00)
    s.customer()
    for i in range(8):
        inv = s.invoice(d("2024-01-01") + 60 * i * DAY)
        s.response(inv.issue_date + 3 * DAY, "promise")
        s.pay(inv, inv.due_date - 2 * DAY, method="check")
    inv = s.invoice(d("2025-05-01"))
    s.pay(inv, d("2025-05-20"), amount=300_00, method="card")
    return s


async def test_profile_score_and_signals_of_a_customer(
    maker: async_sessionmaker[AsyncSession], client: httpx.AsyncClient
) -> None:
    s = _switcher()
    await feed(maker, s.events)
    r = await client.get(f"/v1/customers/{s.cid}/profile")
    assert r.status_code == 200, r.text
    p = r.json()
    assert p["as_of"].startswith("2025-05-20")  # "today" from the events, not the clock
    assert p["payment_method"]["usual"] == "check"
    assert [h["method"] for h in p["payment_method"]["history"]] == ["check", "card"]
    assert p["payment_method"]["history"][0]["payments"] == 8
    assert p["balances"]["EUR"]["open"] == 700_00
    assert p["partial_payments"]["share"] is not None
    assert p["promises"]["made"] == 8
    assert p["responses"] == {"promise": 8}
    assert p["credit_limit"]["limit"] == 5000_00
    assert p["days_to_pay"]["previous_12_months"]["payments"] >= 1

    r = await client.get(f"/v1/customers/{s.cid}/score")
    body = r.json()
    assert body["score"] == sum(f["points"] for f in body["factors"])
    assert body["band"] in ("low", "medium", "high", "critical")

    r = await client.get(f"/v1/customers/{s.cid}/signals")
    kinds = {x["kind"] for x in r.json()["open"]}
    assert "payment_method_switch" in kinds
    assert (await client.get("/v1/customers/cus_nobody/profile")).status_code == 404


async def test_signals_and_scores_across_customers_are_paginated(
    maker: async_sessionmaker[AsyncSession], client: httpx.AsyncClient
) -> None:
    scripts = [_switcher() for _ in range(3)]
    for s in scripts:
        await feed(maker, s.events)
    r = await client.get(
        "/v1/signals", params={"open": "true", "kind": "payment_method_switch", "limit": 2}
    )
    first = r.json()
    assert len(first["items"]) == 2
    assert first["next_cursor"]
    r = await client.get(
        "/v1/signals",
        params={
            "open": "true",
            "kind": "payment_method_switch",
            "limit": 2,
            "cursor": first["next_cursor"],
        },
    )
    second = r.json()
    assert len(second["items"]) == 1
    assert second["next_cursor"] is None
    seen = {x["customer_id"] for x in first["items"] + second["items"]}
    assert seen == {s.cid for s in scripts}

    pages, cursor = [], None
    while True:
        params: dict[str, str | int] = {"limit": 1}
        if cursor:
            params["cursor"] = cursor
        page = (await client.get("/v1/scores", params=params)).json()
        pages.extend(page["items"])
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert {x["customer_id"] for x in pages} == {s.cid for s in scripts}
    scores = [x["score"] for x in pages]
    assert scores == sorted(scores, reverse=True)
    band = pages[0]["band"]
    only = (await client.get("/v1/scores", params={"band": band})).json()["items"]
    assert {x["band"] for x in only} == {band}
    assert (await client.get("/v1/scores", params={"cursor": "garbage"})).status_code == 422


async def test_an_admin_mints_a_collector_token_that_reads_but_cannot_mint(
    risk_app: FastAPI, client: httpx.AsyncClient
) -> None:
    created = await client.post("/v1/tokens", json={"name": "carol", "role": "collector"})
    assert created.status_code == 201, created.text
    token = created.json()["token"]
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=risk_app),
        base_url="http://risk.test",
        headers={"Authorization": f"Bearer {token}"},
    ) as carol:
        assert (await carol.get("/v1/scores")).status_code == 200
        assert (
            await carol.post("/v1/tokens", json={"name": "x", "role": "admin"})
        ).status_code == 403
