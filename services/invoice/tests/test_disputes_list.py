"""GET /v1/disputes?customer_id=: one customer's disputes in one call (the collector UI's
customer page reads them so, not one call per dispute)."""

from __future__ import annotations

import httpx

from .factories import new_customer, new_invoice


async def test_a_customers_disputes_are_listed_and_paginated(client: httpx.AsyncClient) -> None:
    c, other = await new_customer(client), await new_customer(client)
    opened = []
    for _ in range(3):
        inv = await new_invoice(client, c["id"])
        r = await client.post(f"/v1/invoices/{inv['id']}/disputes", json={"reason": "price"})
        assert r.status_code == 201, r.text
        opened.append(r.json())
    theirs = await new_invoice(client, other["id"])
    r = await client.post(f"/v1/invoices/{theirs['id']}/disputes", json={"reason": "price"})
    assert r.status_code == 201
    r = await client.post(f"/v1/disputes/{opened[0]['id']}/resolve", json={"outcome": "settled"})
    assert r.status_code == 200, r.text

    everything = (await client.get("/v1/disputes", params={"customer_id": c["id"]})).json()
    assert sorted(d["id"] for d in everything["items"]) == sorted(d["id"] for d in opened)
    assert everything["next_cursor"] is None
    still_open = await client.get("/v1/disputes", params={"customer_id": c["id"], "status": "open"})
    assert {d["id"] for d in still_open.json()["items"]} == {opened[1]["id"], opened[2]["id"]}

    first = (await client.get("/v1/disputes", params={"customer_id": c["id"], "limit": 2})).json()
    assert len(first["items"]) == 2 and first["next_cursor"]
    rest = await client.get(
        "/v1/disputes",
        params={"customer_id": c["id"], "limit": 2, "cursor": first["next_cursor"]},
    )
    assert len(rest.json()["items"]) == 1 and rest.json()["next_cursor"] is None
    assert (await client.get("/v1/disputes")).status_code == 422  # a customer is required
