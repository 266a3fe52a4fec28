"""Idempotency-Key: a replay returns the first response and writes nothing more."""

from __future__ import annotations

import asyncio
import json

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine

from .factories import counts, invoice_payload, new_customer


async def test_replay_returns_the_first_response(
    client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    c = await new_customer(client)
    body = invoice_payload(c["id"])
    headers = {"Idempotency-Key": "k-1"}
    first = await client.post("/v1/invoices", json=body, headers=headers)
    assert first.status_code == 201
    after_first = await counts(engine)
    # The same body with other key order and spacing is the same request.
    again = await client.post(
        "/v1/invoices",
        content=json.dumps(dict(reversed(list(body.items()))), indent=2),
        headers={**headers, "Content-Type": "application/json"},
    )
    assert again.status_code == 201
    assert again.json() == first.json()
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert await counts(engine) == after_first


async def test_same_key_other_body_is_422(client: httpx.AsyncClient, engine: AsyncEngine) -> None:
    c = await new_customer(client)
    headers = {"Idempotency-Key": "k-2"}
    assert (
        await client.post("/v1/invoices", json=invoice_payload(c["id"]), headers=headers)
    ).status_code == 201
    before = await counts(engine)
    r = await client.post("/v1/invoices", json=invoice_payload(c["id"]), headers=headers)
    assert r.status_code == 422
    assert r.json()["type"].endswith("/idempotency-key-reused")
    assert "Idempotency-Key" in r.text
    assert await counts(engine) == before


async def test_failed_write_does_not_burn_the_key(client: httpx.AsyncClient) -> None:
    c = await new_customer(client)
    headers = {"Idempotency-Key": "k-3"}
    bad = invoice_payload(c["id"], currency="USD")
    assert (await client.post("/v1/invoices", json=bad, headers=headers)).status_code == 422
    good = invoice_payload(c["id"])
    assert (await client.post("/v1/invoices", json=good, headers=headers)).status_code == 201


async def test_concurrent_duplicates_write_once(
    client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    c = await new_customer(client)
    body = invoice_payload(c["id"])
    before = await counts(engine)
    responses = await asyncio.gather(
        *[
            client.post("/v1/invoices", json=body, headers={"Idempotency-Key": "k-4"})
            for _ in range(8)
        ]
    )
    assert {r.status_code for r in responses} == {201}
    assert len({r.json()["id"] for r in responses}) == 1
    after = await counts(engine)
    assert after["invoice"] == before["invoice"] + 1
    assert after["outbox"] == before["outbox"] + 1


async def test_keys_are_per_principal(client: httpx.AsyncClient) -> None:
    r = await client.post("/v1/tokens", json={"name": "erp", "role": "service"})
    service_token = r.json()["token"]
    c = await new_customer(client)
    body = invoice_payload(c["id"])
    mine = await client.post("/v1/invoices", json=body, headers={"Idempotency-Key": "shared"})
    theirs = await client.post(
        "/v1/invoices",
        json={**body, "number": "OTHER", "external_id": "OTHER"},
        headers={"Idempotency-Key": "shared", "Authorization": f"Bearer {service_token}"},
    )
    assert (mine.status_code, theirs.status_code) == (201, 201)
    assert mine.json()["id"] != theirs.json()["id"]
