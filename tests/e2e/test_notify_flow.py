"""Across the running services: an invoice posted to the invoice API reaches the customer's
billing contact through Kafka, notify and the local SMTP catcher, with its PDF and the
customer's PO and GL details; the delivery log says so."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import httpx
import pytest
from e2e_stack import INVOICE, NOTIFY, TOKEN

HEADERS = {"Authorization": f"Bearer {TOKEN}"}


async def _mail_to(
    catcher: httpx.AsyncClient, address: str, within: float = 90.0
) -> dict[str, Any]:
    deadline = time.monotonic() + within
    while True:
        for mail in (await catcher.get("/api/messages")).json():
            if address in mail["recipients"]:  # the envelope recipients, bare addresses
                detail: dict[str, Any] = (await catcher.get(f"/api/messages/{mail['id']}")).json()
                return detail
        assert time.monotonic() < deadline, f"no mail to {address} in {within}s"
        await asyncio.sleep(0.2)


@pytest.mark.slow
async def test_an_invoice_posted_over_http_arrives_in_the_inbox_with_its_pdf(
    stack: dict[str, str],
) -> None:
    tag = uuid.uuid4().hex[:6]
    billing = f"ap-{tag}@globex.example"
    async with (
        httpx.AsyncClient(base_url=INVOICE, headers=HEADERS) as inv,
        httpx.AsyncClient(base_url=NOTIFY, headers=HEADERS) as notify,
        httpx.AsyncClient(base_url=stack["catcher"]) as catcher,
    ):
        r = await inv.post(
            "/v1/customers",
            json={
                "name": f"Globex {tag}",
                "currency": "EUR",
                "country": "FR",
                "timezone": "Europe/Paris",
                "locale": "fr-FR",
                "owner": "alice@collectors.example",
                "contacts": [{"name": "Comptabilité", "email": billing, "role": "billing"}],
                "invoice_preferences": {"po_required": True, "customer_gl_code": "GX-4711"},
            },
        )
        assert r.status_code == 201, r.text
        customer_id = r.json()["id"]
        r = await inv.post(
            "/v1/invoices",
            json={
                "customer_id": customer_id,
                "number": f"E2E-{tag}",
                "issue_date": "2026-11-23",
                "currency": "EUR",
                "po_number": f"PO-{tag}",
                "lines": [{"description": "Widgets", "quantity": 3, "unit_price": 410_00}],
            },
        )
        assert r.status_code == 201, r.text

        mail = await _mail_to(catcher, billing)
        assert f"E2E-{tag}" in mail["subject"]
        assert f"PO-{tag}" in mail["text"]
        assert "GX-4711" in mail["text"]
        assert "1\u202f230,00\xa0€" in mail["text"]  # fr-FR: narrow no-break space
        assert [a["content_type"] for a in mail["attachments"]] == ["application/pdf"]

        log = (await notify.get("/v1/messages", params={"customer_id": customer_id})).json()
        [entry] = [m for m in log["items"] if m["kind"] == "invoice"]
        assert entry["status"] == "sent"
        assert (await notify.get("/v1/messages")).status_code == 200
        assert (await httpx.AsyncClient(base_url=NOTIFY).get("/v1/messages")).status_code == 401
