"""Across the running services: an invoice is planned by dunning, its reminders fire on the
customer's clock, the final notice's fee comes back as a fee invoice from the invoice
service, and a full payment leaves nothing pending. Everything over HTTP and Kafka."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import httpx
import pytest
from duewise_events import topic_reader
from e2e_stack import DUNNING, INVOICE, TOKEN

T = TypeVar("T")
HEADERS = {"Authorization": f"Bearer {TOKEN}"}


async def eventually(
    probe: Callable[[], Awaitable[T]], ok: Callable[[T], bool], *, within: float = 20.0
) -> T:
    deadline = time.monotonic() + within
    while True:
        value = await probe()
        if ok(value):
            return value
        assert time.monotonic() < deadline, f"not reached in {within}s; last: {value!r}"
        await asyncio.sleep(0.2)


def of_type(
    records: list[topic_reader.Record], ce_type: str, customer: str
) -> list[dict[str, Any]]:
    return [
        json.loads(r.value or b"{}")
        for r in records
        if dict(r.headers).get("ce_type") == ce_type.encode() and r.key == customer.encode()
    ]


@pytest.mark.slow
async def test_invoice_reminders_fee_invoice_and_payment_across_services(
    stack: dict[str, str],
) -> None:
    bootstrap = stack["bootstrap"]
    tag = uuid.uuid4().hex[:6]
    async with (
        httpx.AsyncClient(base_url=INVOICE, headers=HEADERS) as inv,
        httpx.AsyncClient(base_url=DUNNING, headers=HEADERS) as dun,
    ):
        r = await inv.post(
            "/v1/customers",
            json={
                "name": f"Globex {tag}",
                "external_id": f"E2E-DUN-{tag}",
                "currency": "USD",
                "timezone": "America/New_York",
                "country": "US",
                "locale": "en-US",
                "payment_terms_days": 30,
                "contacts": [
                    {"name": "AP", "email": f"ap-{tag}@globex.example", "role": "billing"}
                ],
            },
        )
        assert r.status_code == 201, r.text
        customer = r.json()["id"]
        r = await inv.post(
            "/v1/invoices",
            json={
                "customer_id": customer,
                "number": f"G-{tag}",
                "issue_date": "2027-02-01",
                "due_date": "2027-03-10",
                "currency": "USD",
                "total": 50000,
            },
        )
        assert r.status_code == 201, r.text
        invoice = r.json()["id"]

        # Dunning hears of it over Kafka and plans the default policy's seven steps...
        async def timeline() -> dict[str, Any]:
            t = await dun.get(f"/v1/invoices/{invoice}/timeline")
            return t.json() if t.status_code == 200 else {"upcoming": [], "status": t.status_code}

        planned = await eventually(timeline, lambda t: len(t["upcoming"]) == 7)
        # ...exactly as the stateless preview says for the same facts.
        r = await dun.post(
            "/v1/policies/preview",
            json={
                "invoice": {
                    "invoice_id": invoice,
                    "customer_id": customer,
                    "number": f"G-{tag}",
                    "issue_date": "2027-02-01",
                    "due_date": "2027-03-10",
                    "total": 50000,
                    "currency": "USD",
                    "timezone": "America/New_York",
                    "country": "US",
                }
            },
        )
        assert r.status_code == 200, r.text
        preview = [
            (s["key"], dt.datetime.fromisoformat(s["send_at_utc"])) for s in r.json()["steps"]
        ]
        upcoming = [
            (e["step_key"], dt.datetime.fromisoformat(e["send_at"])) for e in planned["upcoming"]
        ]
        assert upcoming == preview
        send_at = dict(upcoming)

        # On the due date, at 09:00 New York time, the due-date note goes out.
        since = await topic_reader.end_offsets(bootstrap, "dunning.events")
        now = send_at["due_today"] + dt.timedelta(minutes=1)
        assert (await dun.post("/v1/admin/clock", json={"now": now.isoformat()})).status_code == 200
        records = await topic_reader.read(
            bootstrap,
            "dunning.events",
            since=since,
            until=lambda rs: bool(of_type(rs, "reminder.due.v1", customer)),
            timeout_s=20,
        )
        (due_note,) = of_type(records, "reminder.due.v1", customer)
        assert due_note["step_key"] == "due_today"
        assert [i["invoice_id"] for i in due_note["invoices"]] == [invoice]
        assert due_note["invoices"][0]["balance"] == 50000

        # Down (or asleep) past three steps: only the latest due, the final notice, goes out,
        # with its late fee, and the invoice service turns the fee into a fee invoice.
        since = await topic_reader.end_offsets(bootstrap, "dunning.events")
        now = send_at["final_30"] + dt.timedelta(minutes=1)
        assert (await dun.post("/v1/admin/clock", json={"now": now.isoformat()})).status_code == 200
        records = await topic_reader.read(
            bootstrap,
            "dunning.events",
            since=since,
            until=lambda rs: bool(of_type(rs, "fee.assessed.v1", customer)),
            timeout_s=20,
            idle_s=1.0,
        )
        reminders = of_type(records, "reminder.due.v1", customer)
        assert [r["step_key"] for r in reminders] == ["final_30"]
        (fee,) = of_type(records, "fee.assessed.v1", customer)
        assert (fee["invoice_id"], fee["amount"], fee["kind"]) == (invoice, 4000, "late_fee")

        async def fee_invoices() -> list[dict[str, Any]]:
            r = await inv.get("/v1/invoices", params={"customer_id": customer})
            return [i for i in r.json()["items"] if i["kind"] == "fee"]

        (fee_invoice,) = await eventually(fee_invoices, lambda items: len(items) == 1)
        assert (fee_invoice["total"], fee_invoice["external_id"]) == (4000, fee["fee_id"])

        # A full payment of the original invoice leaves nothing pending for it.
        r = await inv.post(
            "/v1/payments",
            json={
                "customer_id": customer,
                "amount": 50000,
                "currency": "USD",
                "method": "ach",
                "received_at": "2027-04-12",
                "allocations": [{"invoice_id": invoice, "amount": 50000}],
            },
        )
        assert r.status_code == 201, r.text
        final = await eventually(timeline, lambda t: not t["upcoming"])
        assert {e["step_key"] for e in final["fired"]} == {"due_today", "final_30"}
