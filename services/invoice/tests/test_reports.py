"""Aging buckets on chosen dates, balances per customer, pagination of lists."""

from __future__ import annotations

import httpx

from .factories import new_customer, new_invoice, new_payment


async def test_aging_buckets(client: httpx.AsyncClient) -> None:
    c = await new_customer(client)
    # as_of 2026-12-31: days past due 0, 1, 30, 31, 60, 61, 90, 91
    dues = {
        "2026-12-31": "current",
        "2026-12-30": "1-30",
        "2026-12-01": "1-30",
        "2026-11-30": "31-60",
        "2026-11-01": "31-60",
        "2026-10-31": "61-90",
        "2026-10-02": "61-90",
        "2026-10-01": "90+",
    }
    for due in dues:
        await new_invoice(client, c["id"], issue_date="2026-09-01", due_date=due)
    usd = await new_customer(client, currency="USD", timezone="America/New_York", country="US")
    await new_invoice(
        client, usd["id"], issue_date="2026-09-01", due_date="2026-12-01", currency="USD"
    )

    r = await client.get("/v1/reports/aging", params={"as_of": "2026-12-31"})
    assert r.status_code == 200, r.text
    totals = {t["currency"]: t for t in r.json()["totals"]}
    assert set(totals) == {"EUR", "USD"}  # never summed across currencies
    assert totals["EUR"]["buckets"] == {
        "current": 10000,
        "1-30": 20000,
        "31-60": 20000,
        "61-90": 20000,
        "90+": 10000,
    }
    assert totals["EUR"]["total"] == 80000
    assert totals["USD"]["buckets"]["1-30"] == 10000

    r = await client.get(f"/v1/customers/{usd['id']}/aging", params={"as_of": "2026-11-15"})
    [only] = r.json()["totals"]
    assert only["buckets"]["current"] == 10000


async def test_paid_and_void_not_aged(client: httpx.AsyncClient) -> None:
    c = await new_customer(client)
    paid = await new_invoice(client, c["id"], due_date="2026-12-01")
    await new_payment(client, c["id"], 10000)
    void = await new_invoice(client, c["id"], due_date="2026-12-01")
    await client.post(f"/v1/invoices/{void['id']}/void")
    part = await new_invoice(client, c["id"], due_date="2026-12-01")
    await new_payment(
        client, c["id"], 4000, allocations=[{"invoice_id": part["id"], "amount": 4000}]
    )
    r = await client.get(f"/v1/customers/{c['id']}/aging", params={"as_of": "2026-12-10"})
    [eur] = r.json()["totals"]
    assert eur["buckets"]["1-30"] == 6000
    r = await client.get(f"/v1/customers/{c['id']}/balance", params={"as_of": "2026-12-10"})
    body = r.json()
    assert (body["open"], body["overdue"], body["credit"]) == (6000, 6000, 0)
    assert body["by_status"]["paid"]["invoices"] == 1
    assert body["by_status"]["void"]["invoices"] == 1
    assert paid["id"]


async def test_pagination(client: httpx.AsyncClient) -> None:
    c = await new_customer(client)
    created = [(await new_invoice(client, c["id"]))["id"] for _ in range(7)]
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        params: dict[str, str | int] = {"limit": 3, "customer_id": c["id"]}
        if cursor:
            params["cursor"] = cursor
        r = await client.get("/v1/invoices", params=params)
        assert r.status_code == 200, r.text
        seen += [i["id"] for i in r.json()["items"]]
        pages += 1
        cursor = r.json()["next_cursor"]
        if cursor is None:
            break
    assert (seen, pages) == (created, 3)
    assert (await client.get("/v1/invoices", params={"limit": 201})).status_code == 422
    r = await client.get("/v1/invoices", params={"status": "open", "due_before": "2026-12-02"})
    assert len(r.json()["items"]) == 7
    r = await client.get("/v1/customers", params={"limit": 1})
    assert len(r.json()["items"]) == 1
    r = await client.get("/v1/payments", params={"customer_id": c["id"]})
    assert r.json() == {"items": [], "next_cursor": None}
