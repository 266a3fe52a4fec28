"""contacts:write: a collector replaces the contacts of its own customers (the billing
contact's address) and of no one else's; customers:write stays out of its reach."""

from __future__ import annotations

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine

from .factories import new_customer, outbox_rows

NEW = {"contacts": [{"name": "Pat", "email": "pat@payables.example", "role": "billing"}]}


async def test_a_collector_fixes_contacts_of_its_own_customers_only(
    client: httpx.AsyncClient, anon: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    mine = await new_customer(client, owner="bob")
    theirs = await new_customer(client, owner="carol")
    r = await client.post("/v1/tokens", json={"name": "ui:bob", "role": "collector"})
    assert r.status_code == 201, r.text
    bob = {"Authorization": f"Bearer {r.json()['token']}", "Idempotency-Key": "contacts-1"}

    r = await anon.put(f"/v1/customers/{mine['id']}/contacts", json=NEW, headers=bob)
    assert r.status_code == 200, r.text
    assert [(c["email"], c["role"]) for c in r.json()["contacts"]] == [
        ("pat@payables.example", "billing")
    ]
    [updated] = [
        e for e in await outbox_rows(engine, "customer.updated.v1")
        if e["payload"]["customer_id"] == mine["id"]
    ]  # fmt: skip
    assert "contacts" in updated["payload"]["changed"]

    other = {**bob, "Idempotency-Key": "contacts-2"}
    r = await anon.put(f"/v1/customers/{theirs['id']}/contacts", json=NEW, headers=other)
    assert r.status_code == 404  # another collector's customer looks like no customer
    assert r.headers["content-type"].startswith("application/problem+json")
    r = await client.get(f"/v1/customers/{theirs['id']}")
    assert r.json()["contacts"][0]["email"] != "pat@payables.example"

    # The rest of the customer stays customers:write's.
    r = await anon.patch(
        f"/v1/customers/{mine['id']}",
        json={"payment_terms_days": 90},
        headers={**bob, "Idempotency-Key": "contacts-3"},
    )
    assert r.status_code == 403
    # An admin (or a system with the service role) may fix anyone's.
    r = await client.put(
        f"/v1/customers/{theirs['id']}/contacts",
        json=NEW,
        headers={"Idempotency-Key": "contacts-4"},
    )
    assert r.status_code == 200, r.text
