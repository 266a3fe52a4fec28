"""Bad input: a 4xx problem+json naming the field, and nothing written (no row, no event)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from .factories import (
    counts,
    customer_payload,
    invoice_payload,
    new_customer,
    new_invoice,
    payment_payload,
)


async def _rejected(
    client: httpx.AsyncClient,
    engine: AsyncEngine,
    path: str,
    body: dict[str, Any],
    field: str,
    status: int = 422,
) -> dict[str, Any]:
    before = await counts(engine)
    r = await client.post(path, json=body)
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    problem = r.json()
    assert problem["status"] == status
    assert problem["type"].startswith("https://duewise.dev/problems/")
    assert field in r.text, f"{field!r} not named in {r.text}"
    assert await counts(engine) == before
    return dict(problem)


@pytest.mark.parametrize(
    ("amount", "why"),
    [(-100, "negative"), (100.5, "float"), (100.0, "float"), ("100", "string"), (True, "bool")],
)
async def test_invoice_money_must_be_a_non_negative_integer(
    client: httpx.AsyncClient, engine: AsyncEngine, amount: Any, why: str
) -> None:
    c = await new_customer(client)
    body = invoice_payload(
        c["id"], lines=[{"description": "x", "quantity": 1, "unit_price": amount}]
    )
    problem = await _rejected(client, engine, "/v1/invoices", body, "unit_price")
    assert problem["errors"][0]["pointer"] == "#/lines/0/unit_price"


@pytest.mark.parametrize("amount", [-1, 10.5, 0])
async def test_payment_amount_must_be_a_positive_integer(
    client: httpx.AsyncClient, engine: AsyncEngine, amount: Any
) -> None:
    c = await new_customer(client)
    await _rejected(client, engine, "/v1/payments", payment_payload(c["id"], amount), "amount")


async def test_credit_limit_float_rejected(client: httpx.AsyncClient, engine: AsyncEngine) -> None:
    await _rejected(
        client, engine, "/v1/customers", customer_payload(credit_limit=10.5), "credit_limit"
    )


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("currency", "EUX"),
        ("timezone", "Mars/Olympus"),
        ("country", "XQ"),
        ("locale", "not a locale"),
    ],
)
async def test_customer_field_validation(
    client: httpx.AsyncClient, engine: AsyncEngine, field: str, value: str
) -> None:
    await _rejected(client, engine, "/v1/customers", customer_payload(**{field: value}), field)


async def test_contact_phone_must_be_e164(client: httpx.AsyncClient, engine: AsyncEngine) -> None:
    body = customer_payload(contacts=[{"name": "AP", "phone": "030 123", "role": "billing"}])
    await _rejected(client, engine, "/v1/customers", body, "contacts/0/phone")


async def test_unknown_invoice_currency(client: httpx.AsyncClient, engine: AsyncEngine) -> None:
    c = await new_customer(client)
    await _rejected(
        client, engine, "/v1/invoices", invoice_payload(c["id"], currency="ZZZ"), "currency"
    )


async def test_invoice_currency_mismatch(client: httpx.AsyncClient, engine: AsyncEngine) -> None:
    c = await new_customer(client)
    p = await _rejected(
        client, engine, "/v1/invoices", invoice_payload(c["id"], currency="USD"), "currency"
    )
    assert p["type"].endswith("/currency-mismatch")


async def test_payment_currency_mismatch(client: httpx.AsyncClient, engine: AsyncEngine) -> None:
    c = await new_customer(client)
    body = payment_payload(c["id"], 100, currency="JPY")
    await _rejected(client, engine, "/v1/payments", body, "currency")


async def test_due_before_issue(client: httpx.AsyncClient, engine: AsyncEngine) -> None:
    c = await new_customer(client)
    body = invoice_payload(c["id"], issue_date="2026-11-10", due_date="2026-11-01")
    await _rejected(client, engine, "/v1/invoices", body, "due_date")


async def test_unknown_customer(client: httpx.AsyncClient, engine: AsyncEngine) -> None:
    await _rejected(client, engine, "/v1/invoices", invoice_payload("cus_nope"), "customer_id")
    await _rejected(client, engine, "/v1/payments", payment_payload("cus_nope", 100), "customer_id")
    body = invoice_payload("x")
    del body["customer_id"]
    body["customer_external_id"] = "NOPE"
    await _rejected(client, engine, "/v1/invoices", body, "customer_external_id")


async def test_po_required(client: httpx.AsyncClient, engine: AsyncEngine) -> None:
    c = await new_customer(client, invoice_preferences={"po_required": True})
    await _rejected(client, engine, "/v1/invoices", invoice_payload(c["id"]), "po_number")


async def test_total_must_match_lines(client: httpx.AsyncClient, engine: AsyncEngine) -> None:
    c = await new_customer(client)
    await _rejected(client, engine, "/v1/invoices", invoice_payload(c["id"], total=5), "total")


async def test_allocation_beyond_balance(client: httpx.AsyncClient, engine: AsyncEngine) -> None:
    c = await new_customer(client)
    inv = await new_invoice(client, c["id"])
    body = payment_payload(c["id"], 20000, allocations=[{"invoice_id": inv["id"], "amount": 10001}])
    p = await _rejected(client, engine, "/v1/payments", body, "allocations/0/amount")
    assert p["type"].endswith("/allocation-exceeds-balance")


async def test_allocations_beyond_payment(client: httpx.AsyncClient, engine: AsyncEngine) -> None:
    c = await new_customer(client)
    a = await new_invoice(client, c["id"])
    b = await new_invoice(client, c["id"])
    body = payment_payload(
        c["id"],
        15000,
        allocations=[
            {"invoice_id": a["id"], "amount": 10000},
            {"invoice_id": b["id"], "amount": 10000},
        ],
    )
    await _rejected(client, engine, "/v1/payments", body, "allocations")


async def test_allocation_to_another_customers_invoice(
    client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    c = await new_customer(client)
    other = await new_customer(client)
    inv = await new_invoice(client, other["id"])
    body = payment_payload(c["id"], 100, allocations=[{"invoice_id": inv["id"], "amount": 100}])
    await _rejected(client, engine, "/v1/payments", body, "allocations/0/invoice_id")


async def test_allocation_to_unknown_invoice(
    client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    c = await new_customer(client)
    body = payment_payload(c["id"], 100, allocations=[{"invoice_id": "inv_nope", "amount": 100}])
    await _rejected(client, engine, "/v1/payments", body, "allocations/0/invoice_id")


async def test_duplicate_invoice_number(client: httpx.AsyncClient, engine: AsyncEngine) -> None:
    c = await new_customer(client)
    await new_invoice(client, c["id"], number="INV-DUP", external_id="E1")
    body = invoice_payload(c["id"], number="INV-DUP", external_id="E2")
    await _rejected(client, engine, "/v1/invoices", body, "number", status=409)
    # The same number for another customer is fine.
    other = await new_customer(client)
    await new_invoice(client, other["id"], number="INV-DUP", external_id="E3")


async def test_duplicate_external_ids(client: httpx.AsyncClient, engine: AsyncEngine) -> None:
    c = await new_customer(client, external_id="C-DUP")
    await _rejected(
        client, engine, "/v1/customers", customer_payload(external_id="C-DUP"), "external_id", 409
    )
    await new_invoice(client, c["id"], number="A", external_id="E-DUP")
    body = invoice_payload(c["id"], number="B", external_id="E-DUP")
    await _rejected(client, engine, "/v1/invoices", body, "external_id", status=409)


async def test_unknown_field_rejected(client: httpx.AsyncClient, engine: AsyncEngine) -> None:
    await _rejected(client, engine, "/v1/customers", customer_payload(colour="red"), "colour")


async def test_not_found_is_a_problem(client: httpx.AsyncClient) -> None:
    r = await client.get("/v1/invoices/inv_nope")
    assert r.status_code == 404
    assert r.headers["content-type"].startswith("application/problem+json")
    r = await client.get("/v1/no-such-route")
    assert r.status_code == 404
    assert r.headers["content-type"].startswith("application/problem+json")
