"""Payments and allocation; void, write-off, credit notes, disputes, reversals; customer PATCH."""

from __future__ import annotations

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine

from .factories import new_customer, new_invoice, new_payment, outbox_rows


async def _invoice(client: httpx.AsyncClient, invoice_id: str) -> dict[str, object]:
    r = await client.get(f"/v1/invoices/{invoice_id}")
    assert r.status_code == 200
    return dict(r.json())


async def test_auto_allocation_oldest_due_first_with_credit(
    client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    c = await new_customer(client)
    late = await new_invoice(client, c["id"], due_date="2026-12-20")
    early = await new_invoice(client, c["id"], due_date="2026-12-05")
    p = await new_payment(client, c["id"], 15000)
    assert [a["invoice_id"] for a in p["allocations"]] == [early["id"], late["id"]]
    assert [a["amount"] for a in p["allocations"]] == [10000, 5000]
    assert p["unallocated"] == 0
    assert (await _invoice(client, early["id"]))["status"] == "paid"
    late_now = await _invoice(client, late["id"])
    assert (late_now["balance"], late_now["status"]) == (5000, "partially_paid")

    p2 = await new_payment(client, c["id"], 8000)
    assert p2["allocations"] == [{"invoice_id": late["id"], "amount": 5000}]
    assert p2["unallocated"] == 3000  # the remainder stays as customer credit
    r = await client.get(f"/v1/customers/{c['id']}/balance")
    assert (r.json()["open"], r.json()["credit"]) == (0, 3000)
    event = (await outbox_rows(engine, "payment.received.v1"))[-1]["payload"]
    assert event["unallocated"] == 3000
    assert event["allocations"][0]["invoice_status"] == "paid"


async def test_explicit_partial_allocation(client: httpx.AsyncClient) -> None:
    c = await new_customer(client)
    inv = await new_invoice(client, c["id"])
    p = await new_payment(
        client, c["id"], 6000, allocations=[{"invoice_id": inv["id"], "amount": 4000}]
    )
    assert p["unallocated"] == 2000
    now = await _invoice(client, inv["id"])
    assert (now["balance"], now["status"]) == (6000, "partially_paid")


async def test_void_only_without_payments(client: httpx.AsyncClient, engine: AsyncEngine) -> None:
    c = await new_customer(client)
    inv = await new_invoice(client, c["id"])
    r = await client.post(f"/v1/invoices/{inv['id']}/void", json={"reason": "duplicate"})
    assert r.status_code == 200, r.text
    assert (r.json()["status"], r.json()["balance"]) == ("void", 0)
    assert len(await outbox_rows(engine, "invoice.voided.v1")) == 1

    paid = await new_invoice(client, c["id"])
    await new_payment(client, c["id"], 100, allocations=[{"invoice_id": paid["id"], "amount": 100}])
    r = await client.post(f"/v1/invoices/{paid['id']}/void")
    assert r.status_code == 409
    assert r.json()["type"].endswith("/invoice-has-payments")
    assert len(await outbox_rows(engine, "invoice.voided.v1")) == 1


async def test_write_off(client: httpx.AsyncClient, engine: AsyncEngine) -> None:
    c = await new_customer(client)
    inv = await new_invoice(client, c["id"])
    await new_payment(client, c["id"], 2500)
    r = await client.post(f"/v1/invoices/{inv['id']}/write-off", json={"reason": "insolvent"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["status"], body["balance"], body["written_off_amount"]) == ("written_off", 0, 7500)
    [event] = await outbox_rows(engine, "invoice.written_off.v1")
    assert event["payload"]["amount"] == 7500
    assert (await client.post(f"/v1/invoices/{inv['id']}/write-off")).status_code == 409


async def test_credit_note(client: httpx.AsyncClient, engine: AsyncEngine) -> None:
    c = await new_customer(client)
    inv = await new_invoice(client, c["id"])
    r = await client.post(
        f"/v1/invoices/{inv['id']}/credit-notes", json={"amount": 3000, "reason": "damaged"}
    )
    assert r.status_code == 201, r.text
    now = await _invoice(client, inv["id"])
    assert (now["balance"], now["status"], now["credited_amount"]) == (7000, "open", 3000)
    [event] = await outbox_rows(engine, "credit_note.issued.v1")
    assert (event["payload"]["invoice_balance"], event["payload"]["amount"]) == (7000, 3000)
    r = await client.post(
        f"/v1/invoices/{inv['id']}/credit-notes", json={"amount": 7001, "reason": "too much"}
    )
    assert r.status_code == 422
    assert "amount" in r.json()["detail"]
    r = await client.post(
        f"/v1/invoices/{inv['id']}/credit-notes", json={"amount": 7000, "reason": "rest"}
    )
    assert (await _invoice(client, inv["id"]))["status"] == "paid"


async def test_dispute_open_and_resolve(client: httpx.AsyncClient, engine: AsyncEngine) -> None:
    c = await new_customer(client)
    inv = await new_invoice(client, c["id"])
    r = await client.post(f"/v1/invoices/{inv['id']}/disputes", json={"reason": "wrong quantity"})
    assert r.status_code == 201, r.text
    dispute = r.json()
    assert (await _invoice(client, inv["id"]))["status"] == "disputed"
    assert (
        await client.post(f"/v1/invoices/{inv['id']}/disputes", json={"reason": "again"})
    ).status_code == 409
    # Auto-allocation skips a disputed invoice: the money stays as credit.
    p = await new_payment(client, c["id"], 1000)
    assert (p["allocations"], p["unallocated"]) == ([], 1000)

    r = await client.post(
        f"/v1/disputes/{dispute['id']}/resolve",
        json={"outcome": "settled", "credit_amount": 2000, "note": "agreed discount"},
    )
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "resolved"
    now = await _invoice(client, inv["id"])
    assert (now["status"], now["balance"]) == ("open", 8000)
    [opened] = await outbox_rows(engine, "dispute.opened.v1")
    assert opened["payload"]["reason"] == "wrong quantity"
    [resolved] = await outbox_rows(engine, "dispute.resolved.v1")
    assert (resolved["payload"]["invoice_status"], resolved["payload"]["invoice_balance"]) == (
        "open",
        8000,
    )
    assert len(await outbox_rows(engine, "credit_note.issued.v1")) == 1


async def test_payment_reversal_reopens_balances(
    client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    c = await new_customer(client)
    a = await new_invoice(client, c["id"], due_date="2026-12-01")
    b = await new_invoice(client, c["id"], due_date="2026-12-02")
    p = await new_payment(client, c["id"], 15000, method="check")
    r = await client.post(f"/v1/payments/{p['id']}/reverse", json={"reason": "bounced_check"})
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "reversed"
    for inv in (a, b):
        now = await _invoice(client, inv["id"])
        assert (now["balance"], now["status"]) == (10000, "open")
    [event] = await outbox_rows(engine, "payment.reversed.v1")
    assert event["payload"]["reason"] == "bounced_check"
    assert [x["invoice_balance"] for x in event["payload"]["allocations"]] == [10000, 10000]
    again = await client.post(f"/v1/payments/{p['id']}/reverse", json={"reason": "other"})
    assert again.status_code == 409
    bad = await client.post(f"/v1/payments/{p['id']}/reverse", json={"reason": "nope"})
    assert bad.status_code == 422
    # After the reversal the invoice can be voided: no effective payment is allocated.
    assert (await client.post(f"/v1/invoices/{a['id']}/void")).status_code == 200


async def test_patch_customer_replaces_contacts(
    client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    c = await new_customer(client)
    r = await client.patch(
        f"/v1/customers/{c['id']}",
        json={
            "payment_terms_days": 45,
            "contacts": [{"name": "New AP", "email": "new-ap@example.com", "role": "billing"}],
        },
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["payment_terms_days"] == 45
    assert [x["email"] for x in body["contacts"]] == ["new-ap@example.com"]
    [event] = await outbox_rows(engine, "customer.updated.v1")
    assert event["payload"]["changed"] == ["contacts", "payment_terms_days"]
    assert event["payload"]["contacts"][0]["email"] == "new-ap@example.com"
    await new_invoice(client, c["id"])
    r = await client.patch(f"/v1/customers/{c['id']}", json={"currency": "USD"})
    assert r.status_code == 409
    assert "currency" in r.text


async def test_owner_round_trips_and_is_in_the_events(
    client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    c = await new_customer(client, owner="collector-anna")
    assert c["owner"] == "collector-anna"
    assert (await client.get(f"/v1/customers/{c['id']}")).json()["owner"] == "collector-anna"
    [created] = await outbox_rows(engine, "customer.created.v1")
    assert created["payload"]["owner"] == "collector-anna"

    r = await client.patch(f"/v1/customers/{c['id']}", json={"owner": "collector-ben"})
    assert r.status_code == 200, r.text
    assert r.json()["owner"] == "collector-ben"
    assert (await client.get(f"/v1/customers/{c['id']}")).json()["owner"] == "collector-ben"
    [updated] = await outbox_rows(engine, "customer.updated.v1")
    assert (updated["payload"]["owner"], updated["payload"]["changed"]) == (
        "collector-ben",
        ["owner"],
    )

    # null unassigns; an empty owner is refused.
    r = await client.patch(f"/v1/customers/{c['id']}", json={"owner": None})
    assert (r.status_code, r.json()["owner"]) == (200, None)
    assert (await outbox_rows(engine, "customer.updated.v1"))[-1]["payload"]["owner"] is None
    r = await client.patch(f"/v1/customers/{c['id']}", json={"owner": ""})
    assert r.status_code == 422
    assert "owner" in r.text
    assert (await new_customer(client))["owner"] is None


async def test_customers_list_by_owner_pages_one_portfolio(client: httpx.AsyncClient) -> None:
    anna = [(await new_customer(client, owner="anna"))["id"] for _ in range(3)]
    ben = (await new_customer(client, owner="ben"))["id"]
    nobody = (await new_customer(client))["id"]

    seen: list[str] = []
    params: dict[str, object] = {"owner": "anna", "limit": 2}
    while True:
        r = await client.get("/v1/customers", params=params)
        assert r.status_code == 200, r.text
        page = r.json()
        assert {c["owner"] for c in page["items"]} <= {"anna"}
        seen += [c["id"] for c in page["items"]]
        if not page["next_cursor"]:
            break
        params["cursor"] = page["next_cursor"]
    assert seen == anna
    r = await client.get("/v1/customers", params={"owner": "ben"})
    assert [c["id"] for c in r.json()["items"]] == [ben]
    r = await client.get("/v1/customers", params={"owner": "carol"})
    assert r.json() == {"items": [], "next_cursor": None}
    everyone = (await client.get("/v1/customers")).json()["items"]
    assert {c["id"] for c in everyone} == {*anna, ben, nobody}
    r = await client.get("/v1/customers", params={"owner": ""})
    assert r.status_code == 422
    assert r.headers["content-type"] == "application/problem+json"
