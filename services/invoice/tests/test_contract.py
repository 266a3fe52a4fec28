"""The three requests other systems integrate with, exactly as written, and their events."""

from __future__ import annotations

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine

from .factories import CONTRACT_CUSTOMER, outbox_rows


async def test_contract_requests(client: httpx.AsyncClient, engine: AsyncEngine) -> None:
    r = await client.post("/v1/customers", json=CONTRACT_CUSTOMER)
    assert r.status_code == 201, r.text
    customer = r.json()
    assert isinstance(customer["id"], str)
    assert customer["contacts"][0]["email"] == "ap@acme.example"
    assert customer["invoice_preferences"]["po_required"] is True

    r = await client.post(
        "/v1/invoices",
        json={
            "customer_id": customer["id"],
            "number": "INV-1",
            "external_id": "INV-1",
            "issue_date": "2026-11-23",
            "due_date": "2026-12-23",
            "currency": "EUR",
            "po_number": "PO-77",
            "lines": [{"description": "Widgets", "quantity": 3, "unit_price": 12500}],
        },
    )
    assert r.status_code == 201, r.text
    invoice = r.json()
    assert isinstance(invoice["id"], str)
    assert (invoice["total"], invoice["balance"], invoice["status"]) == (37500, 37500, "open")
    assert invoice["gl_code"] == "6100-200"  # the customer's own GL code by default

    r = await client.post(
        "/v1/payments",
        json={
            "customer_id": customer["id"],
            "amount": 37500,
            "currency": "EUR",
            "method": "check",
            "received_at": "2026-11-30",
            "reference": "CHK 2231",
            "allocations": [{"invoice_id": invoice["id"], "amount": 37500}],
        },
    )
    assert r.status_code == 201, r.text
    payment = r.json()
    assert isinstance(payment["id"], str)
    assert payment["unallocated"] == 0

    r = await client.get(f"/v1/invoices/{invoice['id']}")
    assert (r.json()["balance"], r.json()["status"]) == (0, "paid")

    issued = await outbox_rows(engine, "invoice.issued.v1")
    assert len(issued) == 1
    assert issued[0]["key"] == customer["id"]
    assert issued[0]["topic"] == "invoice.events"
    assert issued[0]["payload"]["invoice_id"] == invoice["id"]
    assert issued[0]["payload"]["total"] == 37500
    assert issued[0]["payload"]["lines"][0]["amount"] == 37500

    received = await outbox_rows(engine, "payment.received.v1")
    assert len(received) == 1
    body = received[0]["payload"]
    assert body["method"] == "check"
    assert body["allocations"] == [
        {
            "invoice_id": invoice["id"],
            "amount": 37500,
            "invoice_balance": 0,
            "invoice_status": "paid",
            "due_date": "2026-12-23",
        }
    ]
    assert [r["type"] for r in await outbox_rows(engine)] == [
        "customer.created.v1",
        "invoice.issued.v1",
        "payment.received.v1",
    ]


async def test_customer_external_id_and_default_due_date(client: httpx.AsyncClient) -> None:
    r = await client.post("/v1/customers", json={**CONTRACT_CUSTOMER, "payment_terms_days": 14})
    customer = r.json()
    r = await client.post(
        "/v1/invoices",
        json={
            "customer_external_id": "C-1001",
            "number": "INV-9",
            "issue_date": "2026-11-23",
            "currency": "EUR",
            "po_number": "PO-1",
            "total": 1000,
        },
    )
    assert r.status_code == 201, r.text
    assert r.json()["customer_id"] == customer["id"]
    assert r.json()["due_date"] == "2026-12-07"
    assert r.json()["total"] == 1000
