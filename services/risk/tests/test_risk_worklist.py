"""The worklist projection: one row per known customer written with its profile, read in
working order a page at a time; a collector's token sees only its own portfolio."""

from __future__ import annotations

import base64
import datetime as dt
import json
from typing import Any

import httpx
from duewise_events.catalogue import CustomerCreated, DunningStageChanged
from fastapi import FastAPI
from risk_kit import Script, at, d, feed
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

DAY = dt.timedelta(days=1)


def _owned(owner: str, currency: str = "EUR") -> Script:
    s = Script(currency=currency)
    created = s.customer()
    s.events[-1] = created.model_copy(update={"owner": owner})
    assert isinstance(s.events[-1], CustomerCreated)
    return s


def _order_key(row: dict[str, Any]) -> tuple[bool, int, int, str]:
    rank = {"critical": 0, "high": 1, "medium": 2, "low": 3}.get(row["band"] or "", 4)
    return (row["pushed_down"], rank, -row["overdue"], row["customer_id"])


async def _walk(client: httpx.AsyncClient, **params: Any) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    cursor = None
    for _ in range(50):
        query = {**params, "limit": 1, **({"cursor": cursor} if cursor else {})}
        page = (await client.get("/v1/worklist", params=query)).json()
        rows += page["items"]
        cursor = page["next_cursor"]
        if not cursor:
            return rows
    raise AssertionError("the worklist did not end")


async def test_the_worklist_is_in_working_order_and_filtered(
    maker: async_sessionmaker[AsyncSession], client: httpx.AsyncClient
) -> None:
    big = _owned("alice")
    inv = big.invoice(d("2026-06-01"), total=5000_00)
    big.events.append(
        DunningStageChanged(
            customer_id=big.cid,
            from_stage="reminded",
            to_stage="final_notice",
            reason="step final",
            changed_at=at(inv.due_date + 20 * DAY),
        )
    )
    small = _owned("alice")
    small.invoice(d("2026-06-01"), total=100_00)
    disputed = _owned("alice")
    bad = disputed.invoice(d("2026-06-01"), total=9000_00)
    disputed.dispute(bad, d("2026-07-10"))
    paid = _owned("alice")
    done = paid.invoice(d("2026-06-01"), total=700_00)
    paid.pay(done, d("2026-06-20"))
    yen = _owned("bob", currency="JPY")
    yen.invoice(d("2026-06-01"), total=20_000)
    for s in (big, small, disputed, paid, yen):
        await feed(maker, s.events)

    everyone = (await client.get("/v1/worklist")).json()
    rows = everyone["items"]
    assert everyone["next_cursor"] is None
    assert [r["customer_id"] for r in rows] == [
        r["customer_id"] for r in sorted(rows, key=_order_key)
    ]
    by_id = {r["customer_id"]: r for r in rows}
    assert set(by_id) == {big.cid, small.cid, disputed.cid, paid.cid, yen.cid}
    assert rows[-1]["customer_id"] == disputed.cid  # under dispute: worked last
    assert by_id[disputed.cid]["open_disputes"] == 1
    assert by_id[disputed.cid]["pushed_down"]
    assert by_id[big.cid]["overdue"] == 5000_00
    assert by_id[big.cid]["oldest_overdue_days"] == (dt.date.today() - inv.due_date).days
    assert by_id[big.cid]["stage"] == "final_notice"
    assert by_id[big.cid]["owner"] == "alice"
    assert by_id[big.cid]["currency"] == "EUR"
    assert by_id[paid.cid]["overdue"] == 0
    assert by_id[paid.cid]["open"] == 0
    assert by_id[big.cid]["band"] is not None
    assert by_id[big.cid]["score"] is not None

    # Paging one row at a time gives the same list in the same order.
    assert await _walk(client) == rows
    assert [r["customer_id"] for r in await _walk(client, owner="alice")] == [
        r["customer_id"] for r in rows if r["owner"] == "alice"
    ]
    stage = (await client.get("/v1/worklist", params={"stage": "final_notice"})).json()
    assert [r["customer_id"] for r in stage["items"]] == [big.cid]
    jpy = (await client.get("/v1/worklist", params={"currency": "JPY"})).json()
    assert [r["customer_id"] for r in jpy["items"]] == [yen.cid]
    band = by_id[big.cid]["band"]
    banded = (await client.get("/v1/worklist", params={"band": band})).json()["items"]
    assert big.cid in {r["customer_id"] for r in banded}
    assert {r["band"] for r in banded} == {band}
    assert (await client.get("/v1/worklist", params={"cursor": "garbage"})).status_code == 422
    forged = base64.urlsafe_b64encode(json.dumps([1, "a", 2, 3]).encode()).decode()
    assert (await client.get("/v1/worklist", params={"cursor": forged})).status_code == 422


async def test_a_collector_token_sees_only_its_own_portfolio(
    risk_app: FastAPI, maker: async_sessionmaker[AsyncSession], client: httpx.AsyncClient
) -> None:
    mine, theirs = _owned("carol"), _owned("dave")
    for s in (mine, theirs):
        s.invoice(d("2026-06-01"))
        await feed(maker, s.events)
    created = await client.post("/v1/tokens", json={"name": "ui:carol", "role": "collector"})
    assert created.status_code == 201, created.text
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=risk_app),
        base_url="http://risk.test",
        headers={"Authorization": f"Bearer {created.json()['token']}"},
    ) as carol:
        seen = (await carol.get("/v1/worklist")).json()["items"]
        assert [r["customer_id"] for r in seen] == [mine.cid]
        refused = await carol.get("/v1/worklist", params={"owner": "dave"})
        assert refused.status_code == 403
        assert refused.headers["content-type"].startswith("application/problem+json")
