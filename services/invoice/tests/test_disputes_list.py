"""What the collector UI's customer page reads in one call rather than one per record:
GET /v1/disputes?customer_id= (a customer's disputes) and GET /v1/customers/{id}/overview."""

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
    assert len(first["items"]) == 2
    assert first["next_cursor"]
    rest = await client.get(
        "/v1/disputes",
        params={"customer_id": c["id"], "limit": 2, "cursor": first["next_cursor"]},
    )
    assert len(rest.json()["items"]) == 1
    assert rest.json()["next_cursor"] is None
    assert (await client.get("/v1/disputes")).status_code == 422  # a customer is required


async def test_a_customers_overview_is_one_call(client: httpx.AsyncClient) -> None:
    c = await new_customer(client)
    inv = await new_invoice(client, c["id"])
    other = await new_invoice(client, c["id"])
    r = await client.post(f"/v1/invoices/{inv['id']}/disputes", json={"reason": "price"})
    assert r.status_code == 201, r.text
    r = await client.get(f"/v1/customers/{c['id']}/overview")
    assert r.status_code == 200, r.text
    doc = r.json()
    assert doc["customer"]["id"] == c["id"]
    assert doc["customer"]["contacts"] == c["contacts"]
    assert doc["balance"] == (await client.get(f"/v1/customers/{c['id']}/balance")).json()
    assert doc["aging"] == (await client.get(f"/v1/customers/{c['id']}/aging")).json()
    listed = (await client.get("/v1/invoices", params={"customer_id": c["id"]})).json()
    assert doc["invoices"] == listed
    assert [i["id"] for i in doc["invoices"]["items"]] == [inv["id"], other["id"]]
    assert doc["payments"] == {"items": [], "next_cursor": None}
    assert [d["invoice_id"] for d in doc["disputes"]["items"]] == [inv["id"]]
    assert (await client.get("/v1/customers/cus_nobody/overview")).status_code == 404
