"""As a new user would: start the stack the way `make run` does, then run the README's curl
example word for word. The example is read from README.md, so the README cannot drift."""

from __future__ import annotations

import json
import re
import subprocess

import httpx
import pytest
from duewise_events import topic_reader
from e2e_stack import ROOT, TOKEN
from opentelemetry.instrumentation.utils import suppress_instrumentation


def readme_example() -> str:
    text = (ROOT / "README.md").read_text()
    match = re.search(r"<!-- quickstart-example.*?-->\n```sh\n(.*?)```", text, re.S)
    assert match, "README.md lost its quickstart example block"
    return match.group(1)


@pytest.mark.slow
async def test_readme_example_creates_a_customer_and_an_invoice(stack: dict[str, str]) -> None:
    since = await topic_reader.end_offsets(stack["bootstrap"], "invoice.events")
    result = subprocess.run(
        ["bash", "-c", readme_example().replace("export TOKEN=...", f"export TOKEN={TOKEN}")],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    customer_text, invoice_text = result.stdout.split("}{", 1)
    customer = json.loads(customer_text + "}")
    invoice = json.loads("{" + invoice_text)
    assert customer["external_id"] == "C-1001"
    assert (invoice["total"], invoice["balance"], invoice["status"]) == (37500, 37500, "open")
    assert invoice["customer_id"] == customer["id"]

    def issued(records: list[topic_reader.Record]) -> list[topic_reader.Record]:
        return [
            r
            for r in records
            if dict(r.headers).get("ce_type") == b"invoice.issued.v1"
            and json.loads(r.value or b"{}").get("invoice_id") == invoice["id"]
        ]

    records = await topic_reader.read(
        stack["bootstrap"],
        "invoice.events",
        since=since,
        until=lambda rs: bool(issued(rs)),
        timeout_s=20,
        idle_s=1.0,
    )
    mine = issued(records)
    assert len(mine) == 1
    assert mine[0].key == customer["id"].encode()
    body = json.loads(mine[0].value or b"{}")
    assert body["total"] == 37500
    assert "traceparent" in dict(mine[0].headers)


@pytest.mark.slow
async def test_trace_of_the_http_request_reaches_the_kafka_record(stack: dict[str, str]) -> None:
    """HTTP → outbox row → relay → Kafka header: one trace id all the way."""
    trace_id = "0af7651916cd43dd8448eb211c80319c"
    since = await topic_reader.end_offsets(stack["bootstrap"], "invoice.events")
    # The caller's own traceparent, as another system would send it: when an earlier test in
    # this process installed the httpx instrumentation, it would replace the header with a
    # client span of its own, so it is switched off for this request.
    with suppress_instrumentation():
        async with httpx.AsyncClient(base_url="http://127.0.0.1:8001") as client:
            response = await client.post(
                "/v1/invoices",
                headers={
                    "Authorization": f"Bearer {TOKEN}",
                    "traceparent": f"00-{trace_id}-b7ad6b7169203331-01",
                },
                json={
                    "customer_external_id": "C-1001",
                    "number": "INV-TRACE",
                    "issue_date": "2026-11-23",
                    "po_number": "PO-78",
                    "total": 1000,
                    "currency": "EUR",
                },
            )
    assert response.status_code == 201, response.text
    invoice_id = response.json()["id"]

    def mine(records: list[topic_reader.Record]) -> list[topic_reader.Record]:
        return [r for r in records if json.loads(r.value or b"{}").get("invoice_id") == invoice_id]

    records = await topic_reader.read(
        stack["bootstrap"], "invoice.events", since=since, until=lambda rs: bool(mine(rs))
    )
    (record,) = mine(records)
    assert dict(record.headers)["traceparent"].decode().split("-")[1] == trace_id
