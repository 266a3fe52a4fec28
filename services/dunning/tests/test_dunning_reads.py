"""The read side of promises and pauses: GET /v1/promises and GET /v1/pauses (filters, pages,
"active" in the customer's time zone, the ar:read scope, problem+json for a bad query)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import httpx
from dunning.auth import AUTH
from dunning.clock import clock
from dunning.scheduler import Scheduler
from dunning_kit import FakeLastLook, at, customer, feed, invoice, payment
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker


async def _promise(dclient: httpx.AsyncClient, cid: str, iid: str, on: str) -> dict[str, Any]:
    r = await dclient.post(
        "/v1/promises",
        json={"customer_id": cid, "invoice_ids": [iid], "amount": 100_00, "promised_date": on},
    )
    assert r.status_code == 201, r.text
    doc: dict[str, Any] = r.json()
    return doc


async def _all(dclient: httpx.AsyncClient, path: str, **params: Any) -> list[dict[str, Any]]:
    """Every item of a list, following next_cursor one item at a time."""
    items: list[dict[str, Any]] = []
    query: dict[str, Any] = {**params, "limit": 1}
    while True:
        r = await dclient.get(path, params=query)
        assert r.status_code == 200, r.text
        page = r.json()
        items += page["items"]
        if not page["next_cursor"]:
            return items
        query["cursor"] = page["next_cursor"]


async def test_dunning_promises_list_by_customer_and_status_paginated(
    dclient: httpx.AsyncClient, maker: async_sessionmaker[AsyncSession]
) -> None:
    clock.set(at("2026-03-03 10:00"), freeze=True)
    a, b = customer(), customer()
    a1, a2, b1 = invoice(a.customer_id), invoice(a.customer_id), invoice(b.customer_id)
    await feed(maker, a, b, a1, a2, b1)
    kept = await _promise(dclient, a.customer_id, a1.invoice_id, "2026-03-09")
    open_ = await _promise(dclient, a.customer_id, a2.invoice_id, "2026-03-20")
    other = await _promise(dclient, b.customer_id, b1.invoice_id, "2026-03-09")
    await feed(maker, payment(a1, received_at=dt.date(2026, 3, 5)))

    mine = await _all(dclient, "/v1/promises", customer_id=a.customer_id)
    assert [p["id"] for p in mine] == [kept["id"], open_["id"]]
    assert {p["id"]: p["status"] for p in mine} == {kept["id"]: "kept", open_["id"]: "open"}
    assert mine[0]["resolved_at"] is not None
    assert mine[1]["resolved_at"] is None
    assert mine[1]["invoice_ids"] == [a2.invoice_id]
    assert mine[1]["currency"] == "EUR"
    r = await dclient.get("/v1/promises", params={"customer_id": a.customer_id, "status": "open"})
    assert [p["id"] for p in r.json()["items"]] == [open_["id"]]
    everyone = await _all(dclient, "/v1/promises", status="open")
    assert {p["id"] for p in everyone} == {open_["id"], other["id"]}
    r = await dclient.get("/v1/promises", params={"customer_id": "cus_nobody"})
    assert r.json() == {"items": [], "next_cursor": None}

    r = await dclient.get("/v1/promises", params={"status": "maybe"})
    assert r.status_code == 422
    assert r.headers["content-type"] == "application/problem+json"
    r = await dclient.get("/v1/promises", params={"limit": 0})
    assert r.status_code == 422
    assert r.headers["content-type"] == "application/problem+json"


async def test_dunning_promise_broken_by_the_scheduler_lists_as_broken(
    dclient: httpx.AsyncClient, maker: async_sessionmaker[AsyncSession]
) -> None:
    clock.set(at("2026-03-03 10:00"), freeze=True)
    c = customer()
    inv = invoice(c.customer_id)
    await feed(maker, c, inv)
    promise = await _promise(dclient, c.customer_id, inv.invoice_id, "2026-03-09")
    look = FakeLastLook({c.customer_id: {inv.invoice_id: inv.total}})
    clock.set(at("2026-03-10 08:30"), freeze=True)
    await Scheduler(maker, clock=clock, last_look=look, name="r").run_once()
    r = await dclient.get("/v1/promises", params={"customer_id": c.customer_id, "status": "broken"})
    assert [p["id"] for p in r.json()["items"]] == [promise["id"]]


async def test_dunning_pauses_of_a_customer_and_its_invoices_active_or_over(
    dclient: httpx.AsyncClient, maker: async_sessionmaker[AsyncSession]
) -> None:
    # 23:30 UTC on the 9th is already the 10th in Tokyo: a pause resuming on the 10th is over.
    clock.set(at("2026-03-09 23:30"), freeze=True)
    tokyo = customer(tz="Asia/Tokyo", country="JP")
    newyork = customer(tz="America/New_York", country="US")
    t1, t2 = invoice(tokyo.customer_id), invoice(tokyo.customer_id)
    b1 = invoice(newyork.customer_id)
    await feed(maker, tokyo, newyork, t1, t2, b1)

    async def pause(**body: Any) -> dict[str, Any]:
        r = await dclient.post("/v1/pauses", json={"reason": "asked to wait", **body})
        assert r.status_code == 201, r.text
        doc: dict[str, Any] = r.json()
        return doc

    whole = await pause(customer_id=tokyo.customer_id)  # no resume date: in force
    over = await pause(invoice_id=t1.invoice_id, resume_on="2026-03-10")  # over in Tokyo
    lifted = await pause(invoice_id=t2.invoice_id, resume_on="2026-04-01")
    r = await dclient.delete(f"/v1/pauses/{lifted['id']}")
    assert r.status_code == 204
    later = await pause(invoice_id=t2.invoice_id, resume_on="2026-04-01")
    newyork_pause = await pause(
        invoice_id=b1.invoice_id, resume_on="2026-03-10"
    )  # the 9th there: on

    listed = await _all(dclient, "/v1/pauses", customer_id=tokyo.customer_id)
    assert [p["id"] for p in listed] == [whole["id"], over["id"], lifted["id"], later["id"]]
    assert {p["of_customer"] for p in listed} == {tokyo.customer_id}
    assert {p["id"]: p["active"] for p in listed} == {
        whole["id"]: True,
        over["id"]: False,
        lifted["id"]: False,
        later["id"]: True,
    }
    by_id = {p["id"]: p for p in listed}
    assert by_id[whole["id"]]["customer_id"] == tokyo.customer_id
    assert by_id[whole["id"]]["invoice_id"] is None
    assert by_id[over["id"]]["kind"] == "manual"
    assert by_id[over["id"]]["created_by"]
    assert by_id[lifted["id"]]["lifted_at"] is not None

    r = await dclient.get("/v1/pauses", params={"customer_id": tokyo.customer_id, "active": True})
    assert [p["id"] for p in r.json()["items"]] == [whole["id"], later["id"]]
    r = await dclient.get("/v1/pauses", params={"customer_id": tokyo.customer_id, "active": False})
    assert [p["id"] for p in r.json()["items"]] == [over["id"], lifted["id"]]
    r = await dclient.get("/v1/pauses", params={"customer_id": newyork.customer_id, "active": True})
    assert [p["id"] for p in r.json()["items"]] == [newyork_pause["id"]]

    # A promise pauses its invoices; the pause lists with kind "promise" and the promise's id.
    promise = await _promise(dclient, newyork.customer_id, b1.invoice_id, "2026-03-20")
    r = await dclient.get("/v1/pauses", params={"customer_id": newyork.customer_id})
    kinds = {p["kind"]: p for p in r.json()["items"]}
    assert kinds["promise"]["ref"] == promise["id"]
    assert kinds["promise"]["resume_on"] == "2026-03-21"

    r = await dclient.get("/v1/pauses", params={"active": "sometimes"})
    assert r.status_code == 422
    assert r.headers["content-type"] == "application/problem+json"


async def test_dunning_reads_need_the_read_scope(
    dunning_app: FastAPI, maker: async_sessionmaker[AsyncSession]
) -> None:
    c = customer()
    await feed(maker, c)
    async with maker() as session, session.begin():
        _, reader = await AUTH.create_token(
            session, name="reader", role="collector", scopes=["ar:read"]
        )
        _, actor = await AUTH.create_token(
            session, name="actor", role="collector", scopes=["customers:act"]
        )
    for token, expected in ((reader, 200), (actor, 403), ("not-a-token", 401)):
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=dunning_app),
            base_url="http://dunning.test",
            headers={"Authorization": f"Bearer {token}"},
        ) as client:
            for path in ("/v1/promises", "/v1/pauses"):
                r = await client.get(path, params={"customer_id": c.customer_id})
                assert r.status_code == expected, (path, r.text)
                if expected != 200:
                    assert r.headers["content-type"] == "application/problem+json"
