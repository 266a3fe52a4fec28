"""Test data for the invoice service: request payloads and small helpers around them."""

from __future__ import annotations

import itertools
from typing import Any

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

_seq = itertools.count(1)

CONTRACT_CUSTOMER: dict[str, Any] = {
    "name": "Acme GmbH",
    "external_id": "C-1001",
    "currency": "EUR",
    "timezone": "Europe/Berlin",
    "country": "DE",
    "locale": "de-DE",
    "payment_terms_days": 30,
    "credit_limit": 5000000,
    "contacts": [
        {"name": "AP desk", "email": "ap@acme.example", "phone": "+4930123456", "role": "billing"}
    ],
    "invoice_preferences": {
        "po_required": True,
        "customer_gl_code": "6100-200",
        "cc": ["controller@acme.example"],
    },
}


def customer_payload(**over: Any) -> dict[str, Any]:
    n = next(_seq)
    body: dict[str, Any] = {
        "name": f"Customer {n}",
        "external_id": f"C-{n:05d}",
        "currency": "EUR",
        "timezone": "Europe/Berlin",
        "country": "DE",
        "locale": "de-DE",
        "payment_terms_days": 30,
        "contacts": [{"name": "AP", "email": f"ap{n}@example.com", "role": "billing"}],
    }
    body.update(over)
    return body


def invoice_payload(customer_id: str, **over: Any) -> dict[str, Any]:
    n = next(_seq)
    body: dict[str, Any] = {
        "customer_id": customer_id,
        "number": f"INV-{n}",
        "external_id": f"ERP-INV-{n}",
        "issue_date": "2026-11-01",
        "due_date": "2026-12-01",
        "currency": "EUR",
        "lines": [{"description": "Service", "quantity": 1, "unit_price": 10000}],
    }
    body.update(over)
    return body


def payment_payload(customer_id: str, amount: int, **over: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "customer_id": customer_id,
        "amount": amount,
        "currency": "EUR",
        "method": "wire",
        "received_at": "2026-11-30",
    }
    body.update(over)
    return body


async def new_customer(client: httpx.AsyncClient, **over: Any) -> dict[str, Any]:
    r = await client.post("/v1/customers", json=customer_payload(**over))
    assert r.status_code == 201, r.text
    return dict(r.json())


async def new_invoice(client: httpx.AsyncClient, customer_id: str, **over: Any) -> dict[str, Any]:
    r = await client.post("/v1/invoices", json=invoice_payload(customer_id, **over))
    assert r.status_code == 201, r.text
    return dict(r.json())


async def new_payment(
    client: httpx.AsyncClient, customer_id: str, amount: int, **over: Any
) -> dict[str, Any]:
    r = await client.post("/v1/payments", json=payment_payload(customer_id, amount, **over))
    assert r.status_code == 201, r.text
    return dict(r.json())


async def counts(engine: AsyncEngine) -> dict[str, int]:
    """Row counts of the tables a write may touch."""
    tables = ["customer", "contact", "invoice", "invoice_line", "payment", "allocation", "outbox"]
    async with engine.connect() as conn:
        return {
            t: int((await conn.execute(text(f"SELECT count(*) FROM {t}"))).scalar_one())
            for t in tables
        }


async def outbox_rows(engine: AsyncEngine, type_: str | None = None) -> list[dict[str, Any]]:
    """Outbox rows in id order, optionally of one event type."""
    sql = "SELECT id, type, key, topic, payload FROM outbox"
    if type_:
        sql += " WHERE type = :t"
    async with engine.connect() as conn:
        rows = await conn.execute(text(sql + " ORDER BY id"), {"t": type_})
        return [dict(r._mapping) for r in rows]
