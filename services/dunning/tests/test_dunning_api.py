"""The HTTP API: policies (validated, versioned, audited), preview, timelines, promises."""

from __future__ import annotations

import datetime as dt
from typing import Any

import httpx
from dunning.clock import clock
from dunning.lastlook import InvoiceApiLastLook
from dunning.scheduler import Scheduler
from dunning_kit import FakeLastLook, at, customer, feed, invoice, outbox, payment, steps
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

POLICY: dict[str, Any] = {
    "name": "Gentle",
    "spec": {
        "name": "Gentle",
        "steps": [
            {"key": "due", "offset_days": 0, "template": "reminder_due_today", "tone": "friendly"},
            {"key": "late", "offset_days": 5, "template": "reminder_overdue", "tone": "neutral"},
        ],
    },
    "segment_tags": ["gentle"],
    "priority": 10,
}


async def _count(maker: async_sessionmaker[AsyncSession], table: str) -> int:
    async with maker() as session:
        return int(await session.scalar(text(f"SELECT count(*) FROM {table}")) or 0)


async def test_bad_policies_are_422_naming_the_field_and_change_nothing(
    dclient: httpx.AsyncClient, maker: async_sessionmaker[AsyncSession]
) -> None:
    bad_fee = {**POLICY, "spec": {**POLICY["spec"], "steps": [
        {"key": "due", "offset_days": 0, "template": "reminder_due_today"},
        {"key": "late", "offset_days": 5, "template": "final_notice", "fee": {"flat": -1}},
    ]}}  # fmt: skip
    r = await dclient.post("/v1/policies", json=bad_fee)
    assert r.status_code == 422
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["errors"][0]["field"].startswith("spec/steps/1/fee")
    out_of_order = {**POLICY, "spec": {**POLICY["spec"], "steps": POLICY["spec"]["steps"][::-1]}}
    r = await dclient.post("/v1/policies", json=out_of_order)
    assert r.status_code == 422
    assert "order" in r.json()["detail"]
    unknown = {**POLICY, "spec": {**POLICY["spec"], "steps": [
        {"key": "due", "offset_days": 0, "template": "nope", "channel": "pigeon"},
    ]}}  # fmt: skip
    r = await dclient.post("/v1/policies", json=unknown)
    assert r.status_code == 422
    fields = {e["field"] for e in r.json()["errors"]}
    assert {"spec/steps/0/template", "spec/steps/0/channel"} <= fields
    assert await _count(maker, "policy") == 0
    assert await _count(maker, "audit_log") == 0


async def test_policy_change_bumps_version_is_audited_and_applies_to_pending_steps(
    dclient: httpx.AsyncClient, maker: async_sessionmaker[AsyncSession]
) -> None:
    clock.set(at("2026-02-01 10:00"), freeze=True)
    c = customer()
    c = c.model_copy(update={"tags": ["gentle"]})
    inv = invoice(c.customer_id)
    await feed(maker, c, inv)
    r = await dclient.post("/v1/policies", json=POLICY, headers={"Idempotency-Key": "p1"})
    assert r.status_code == 201, r.text
    policy = r.json()
    assert [s.step_key for s in await steps(maker, inv.invoice_id) if s.status == "pending"] == [
        "due",
        "late",
    ]
    changed = {**POLICY, "spec": {**POLICY["spec"], "steps": POLICY["spec"]["steps"][:1]}}
    r = await dclient.put(f"/v1/policies/{policy['id']}", json=changed)
    assert r.status_code == 200
    assert r.json()["version"] == 2
    rows = {s.step_key: s for s in await steps(maker, inv.invoice_id)}
    assert rows["due"].status == "pending"
    assert rows["due"].policy_version == 2
    assert rows["late"].status == "cancelled"
    async with maker() as session:
        actions = (await session.execute(text("SELECT action FROM audit_log ORDER BY id"))).all()
    assert [a[0] for a in actions] == ["policy.created", "policy.updated"]


async def test_preview_is_stateless_and_names_every_step(dclient: httpx.AsyncClient) -> None:
    r = await dclient.post(
        "/v1/policies/preview",
        json={
            "invoice": {
                "issue_date": "2026-02-01",
                "due_date": "2026-03-02",
                "total": 10000,
                "currency": "EUR",
                "timezone": "America/New_York",
                "country": "US",
            }
        },
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert [s["key"] for s in body["steps"]][:2] == ["before_7", "due_today"]
    first = body["steps"][0]
    assert first["send_at_local"].startswith("2026-02-23T09:00:00-05:00")
    assert first["send_at_utc"].startswith("2026-02-23T14:00:00")
    assert body["steps"][5]["fee_amount"] == 4000


async def test_timeline_matches_what_then_fires(
    dclient: httpx.AsyncClient, maker: async_sessionmaker[AsyncSession]
) -> None:
    clock.set(at("2026-02-01 10:00"), freeze=True)
    c = customer()
    inv = invoice(c.customer_id)
    await feed(maker, c, inv)
    timeline = (await dclient.get(f"/v1/invoices/{inv.invoice_id}/timeline")).json()
    planned = [(e["step_key"], e["send_at"]) for e in timeline["upcoming"]]
    look = FakeLastLook({c.customer_id: {inv.invoice_id: inv.total}})
    worker = Scheduler(maker, clock=clock, last_look=look, name="t")
    fired = []
    for key, send_at in planned:
        clock.set(dt.datetime.fromisoformat(send_at), freeze=True)
        assert (await worker.run_once()).emitted == 1
        fired.append((key, send_at))
    reminders = await outbox(maker, "reminder.due.v1")
    assert [(r["step_key"], dt.datetime.fromisoformat(r["send_at"])) for r in reminders] == [
        (k, dt.datetime.fromisoformat(s)) for k, s in fired
    ]
    after = (await dclient.get(f"/v1/customers/{c.customer_id}/timeline")).json()
    assert [e["step_key"] for e in after["fired"]] == [k for k, _ in planned]
    assert (await outbox(maker, "credit_hold.placed.v1"))[0]["automatic"] is True
    stage = (await dclient.get(f"/v1/customers/{c.customer_id}/stage")).json()
    assert stage["stage"] == "credit_hold"
    assert stage["on_hold"] is True


async def test_broken_promise_resumes_dunning_at_the_next_step(
    dclient: httpx.AsyncClient, maker: async_sessionmaker[AsyncSession]
) -> None:
    clock.set(at("2026-03-03 10:00"), freeze=True)
    c = customer()
    inv = invoice(c.customer_id)
    await feed(maker, c, inv)
    r = await dclient.post(
        "/v1/promises",
        json={
            "customer_id": c.customer_id,
            "invoice_ids": [inv.invoice_id],
            "amount": inv.total,
            "promised_date": "2026-03-09",
        },
    )
    assert r.status_code == 201, r.text
    look = FakeLastLook({c.customer_id: {inv.invoice_id: inv.total}})
    worker = Scheduler(maker, clock=clock, last_look=look, name="p")
    clock.set(at("2026-03-05 08:30"), freeze=True)  # overdue_3 is due, but promised
    assert (await worker.run_once()).emitted == 0
    clock.set(at("2026-03-10 08:30"), freeze=True)  # the promise date passed unpaid
    await worker.run_once()
    assert len(await outbox(maker, "promise.broken.v1")) == 1
    clock.set(at("2026-03-12 08:30"), freeze=True)
    assert (await worker.run_once()).emitted == 1
    keys = [r["step_key"] for r in await outbox(maker, "reminder.due.v1")]
    assert keys[-1] == "overdue_10"


async def test_last_look_over_http_sees_a_paid_invoice(
    maker: async_sessionmaker[AsyncSession],
) -> None:
    clock.set(at("2026-02-01 10:00"), freeze=True)
    c = customer()
    inv, other = invoice(c.customer_id), invoice(c.customer_id)
    await feed(maker, c, inv, other)
    seen: list[httpx.Request] = []

    def invoice_service(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        # `inv` was paid a moment ago; only `other` is still open.
        return httpx.Response(
            200, json={"items": [{"id": other.invoice_id, "balance": 5000}], "next_cursor": None}
        )

    look = InvoiceApiLastLook(
        httpx.AsyncClient(
            transport=httpx.MockTransport(invoice_service), base_url="http://invoice.test"
        )
    )
    clock.set(at("2026-03-02 08:00"), freeze=True)
    result = await Scheduler(maker, clock=clock, last_look=look, name="h").run_once()
    await look.aclose()
    assert seen[0].url.params["status"] == "open,partially_paid"
    assert seen[0].url.params["customer_id"] == c.customer_id
    assert result.cancelled == 1
    (reminder,) = await outbox(maker, "reminder.due.v1")
    assert [(i["invoice_id"], i["balance"]) for i in reminder["invoices"]] == [
        (other.invoice_id, 5000)
    ]


async def test_clearing_the_overdue_balance_releases_the_hold_automatically(
    dclient: httpx.AsyncClient, maker: async_sessionmaker[AsyncSession]
) -> None:
    clock.set(at("2026-02-01 10:00"), freeze=True)
    c = customer()
    inv = invoice(c.customer_id)
    await feed(maker, c, inv)
    clock.set(at("2026-04-16 07:00"), freeze=True)  # hold_45, 09:00 Berlin (summer time)
    look = FakeLastLook({c.customer_id: {inv.invoice_id: inv.total}})
    assert (await Scheduler(maker, clock=clock, last_look=look, name="h").run_once()).emitted == 1
    (placed,) = await outbox(maker, "credit_hold.placed.v1")
    assert (placed["automatic"], placed["overdue_balance"]) == (True, inv.total)
    assert (await dclient.get(f"/v1/customers/{c.customer_id}/stage")).json()["on_hold"] is True
    await feed(maker, payment(inv, received_at=dt.date(2026, 4, 16)))
    (released,) = await outbox(maker, "credit_hold.released.v1")
    assert released["hold_id"] == placed["hold_id"]
    assert released["automatic"] is True
    assert released["reason"] == "overdue balance cleared"
    assert (await outbox(maker, "dunning.stage_changed.v1"))[-1]["to_stage"] == "current"
    stage = (await dclient.get(f"/v1/customers/{c.customer_id}/stage")).json()
    assert (stage["stage"], stage["on_hold"], stage["hold_reason"]) == ("current", False, None)


async def test_a_partial_payment_leaving_an_overdue_balance_keeps_the_hold(
    dclient: httpx.AsyncClient, maker: async_sessionmaker[AsyncSession]
) -> None:
    clock.set(at("2026-04-20 10:00"), freeze=True)
    c = customer()
    inv = invoice(c.customer_id)
    await feed(maker, c, inv)
    r = await dclient.post(
        f"/v1/customers/{c.customer_id}/credit-hold", json={"reason": "ordered by the CFO"}
    )
    assert r.status_code == 200, r.text
    await feed(maker, payment(inv, 40_00, received_at=dt.date(2026, 4, 20)))
    assert await outbox(maker, "credit_hold.released.v1") == []
    assert (await dclient.get(f"/v1/customers/{c.customer_id}/stage")).json()["on_hold"] is True


async def test_manual_release_needs_a_reason_and_is_an_event(
    dclient: httpx.AsyncClient, maker: async_sessionmaker[AsyncSession]
) -> None:
    clock.set(at("2026-03-20 10:00"), freeze=True)
    c = customer()
    await feed(maker, c, invoice(c.customer_id))
    base = f"/v1/customers/{c.customer_id}/credit-hold"
    r = await dclient.post(base, json={"reason": "ordered by the CFO"})
    assert r.status_code == 200, r.text
    assert (r.json()["on_hold"], r.json()["hold_reason"]) == (True, "ordered by the CFO")
    assert (await dclient.post(f"{base}/release", json={})).status_code == 422
    assert (await dclient.post(f"{base}/release", json={"reason": ""})).status_code == 422
    assert await outbox(maker, "credit_hold.released.v1") == []
    r = await dclient.post(f"{base}/release", json={"reason": "paid by wire, confirmed by bank"})
    assert r.status_code == 200, r.text
    assert (r.json()["stage"], r.json()["on_hold"]) == ("current", False)
    (released,) = await outbox(maker, "credit_hold.released.v1")
    assert (released["automatic"], released["reason"]) == (
        False,
        "paid by wire, confirmed by bank",
    )
    r = await dclient.post(f"{base}/release", json={"reason": "again"})
    assert r.status_code == 409
    assert len(await outbox(maker, "credit_hold.released.v1")) == 1


async def test_idempotency_key_replays_a_promise_and_refuses_another_body(
    dclient: httpx.AsyncClient, maker: async_sessionmaker[AsyncSession]
) -> None:
    clock.set(at("2026-03-03 10:00"), freeze=True)
    c = customer()
    inv = invoice(c.customer_id)
    await feed(maker, c, inv)
    body = {
        "customer_id": c.customer_id,
        "invoice_ids": [inv.invoice_id],
        "amount": inv.total,
        "promised_date": "2026-03-09",
    }
    headers = {"Idempotency-Key": "promise-1"}
    first = await dclient.post("/v1/promises", json=body, headers=headers)
    assert first.status_code == 201, first.text
    again = await dclient.post("/v1/promises", json=body, headers=headers)
    assert again.status_code == 201
    assert again.json() == first.json()
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert await _count(maker, "promise") == 1
    assert await _count(maker, "pause") == 1
    other = await dclient.post("/v1/promises", json={**body, "amount": 1}, headers=headers)
    assert other.status_code == 422
    assert "Idempotency-Key" in other.text
    assert await _count(maker, "promise") == 1
    fresh = await dclient.post("/v1/promises", json=body, headers={"Idempotency-Key": "p-2"})
    assert fresh.status_code == 201
    assert fresh.json()["id"] != first.json()["id"]
