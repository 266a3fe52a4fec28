"""Reads made for the collector UI: GET /v1/stages (stage, credit hold and open promises of
many customers in one call) and GET /v1/customers/{id}/overview (a customer page in one)."""

from __future__ import annotations

import httpx
from dunning.clock import clock
from dunning_kit import at, customer, feed, invoice
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker


async def test_stages_of_many_customers_in_one_call(
    dclient: httpx.AsyncClient, maker: async_sessionmaker[AsyncSession]
) -> None:
    clock.set(at("2026-03-03 10:00"), freeze=True)
    held, promised, plain = customer(), customer(), customer()
    inv = invoice(promised.customer_id)
    await feed(maker, held, promised, plain, inv)
    r = await dclient.post(
        f"/v1/customers/{held.customer_id}/credit-hold", json={"reason": "ordered by the CFO"}
    )
    assert r.status_code in (200, 201), r.text
    r = await dclient.post(
        "/v1/promises",
        json={
            "customer_id": promised.customer_id,
            "invoice_ids": [inv.invoice_id],
            "amount": 100_00,
            "promised_date": "2026-03-20",
        },
    )
    assert r.status_code == 201, r.text

    ids = [plain.customer_id, held.customer_id, promised.customer_id, "cus_unknown"]
    r = await dclient.get("/v1/stages", params={"customer_id": ids})
    assert r.status_code == 200, r.text
    items = r.json()["items"]
    assert [i["customer_id"] for i in items] == ids  # in the order asked
    by_id = {i["customer_id"]: i for i in items}
    assert by_id[held.customer_id]["on_hold"] is True
    assert by_id[held.customer_id]["hold_reason"] == "ordered by the CFO"
    assert by_id[promised.customer_id]["open_promises"] == 1
    assert by_id[plain.customer_id] == {
        "customer_id": plain.customer_id,
        "stage": "current",
        "on_hold": False,
        "hold_reason": None,
        "open_promises": 0,
    }
    r = await dclient.get("/v1/stages")
    assert r.status_code == 422  # at least one customer
    assert r.headers["content-type"] == "application/problem+json"


async def test_a_customers_overview_is_one_call(
    dclient: httpx.AsyncClient, maker: async_sessionmaker[AsyncSession]
) -> None:
    clock.set(at("2026-03-03 10:00"), freeze=True)
    c = customer()
    inv = invoice(c.customer_id)
    await feed(maker, c, inv)
    r = await dclient.post(
        "/v1/promises",
        json={
            "customer_id": c.customer_id,
            "invoice_ids": [inv.invoice_id],
            "amount": 100_00,
            "promised_date": "2026-03-20",
        },
    )
    assert r.status_code == 201, r.text
    r = await dclient.get(f"/v1/customers/{c.customer_id}/overview")
    assert r.status_code == 200, r.text
    doc = r.json()
    base = f"/v1/customers/{c.customer_id}"
    stage = (await dclient.get(f"{base}/stage")).json()
    # A customer with no stage row yet is "current" as of the request: only that instant moves.
    assert {**doc["stage"], "updated_at": None} == {**stage, "updated_at": None}
    assert doc["timeline"] == (await dclient.get(f"{base}/timeline")).json()
    promises = await dclient.get("/v1/promises", params={"customer_id": c.customer_id})
    assert doc["promises"] == promises.json()
    pauses = await dclient.get(
        "/v1/pauses", params={"customer_id": c.customer_id, "active": "true"}
    )
    assert doc["pauses"] == pauses.json()
    assert [p["kind"] for p in doc["pauses"]["items"]] == ["promise"]
    assert (await dclient.get("/v1/customers/cus_nobody/overview")).status_code == 404
