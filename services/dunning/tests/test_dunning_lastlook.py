"""The last look against the REAL invoice service (its app on its own fresh database, over
httpx.ASGITransport): an invoice paid there a moment ago, whose PaymentReceived dunning has
not seen yet ("payment in the same second"), gets no reminder; an unpaid one does."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from duewise_dev.postgres import scratch_database
from duewise_events.catalogue import BY_TYPE
from dunning.clock import clock
from dunning.lastlook import InvoiceApiLastLook
from dunning.scheduler import Scheduler
from dunning_kit import at, feed, outbox, steps
from fastapi import FastAPI
from invoice.config import Settings as InvoiceSettings
from invoice.main import create_app as create_invoice_app
from invoice.migrations import upgrade as upgrade_invoice
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

INVOICE_TOKEN = "test-invoice-admin-" + secrets.token_hex(16)


@pytest.fixture(scope="session")
async def invoice_service(pg_server_url: str, kafka_bootstrap: str) -> AsyncIterator[FastAPI]:
    """The invoice service's app, started, on a fresh database migrated to head."""
    async with scratch_database(
        pg_server_url, "duewise_invoice_for_dunning", upgrade_invoice
    ) as url:
        settings = InvoiceSettings(
            database_url=url, kafka_bootstrap_servers=kafka_bootstrap, admin_token=INVOICE_TOKEN
        )
        application = create_invoice_app(settings)
        async with application.router.lifespan_context(application):
            yield application


@pytest.fixture
async def iclient(invoice_service: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=invoice_service),
        base_url="http://invoice.test",
        headers={"Authorization": f"Bearer {INVOICE_TOKEN}"},
    ) as c:
        yield c


async def _issue(
    iclient: httpx.AsyncClient, invoice_service: FastAPI
) -> tuple[str, str, list[Any]]:
    """A customer and an invoice in the invoice service; its events, as dunning would get them."""
    customer_id, [invoice_id], events = await _issue_many(iclient, invoice_service, 1)
    return customer_id, invoice_id, events


async def _issue_many(
    iclient: httpx.AsyncClient, invoice_service: FastAPI, count: int
) -> tuple[str, list[str], list[Any]]:
    """A customer and `count` invoices due the same day in the invoice service; their events."""
    n = secrets.token_hex(3)
    r = await iclient.post(
        "/v1/customers",
        json={
            "name": f"Real {n}",
            "external_id": f"C-{n}",
            "currency": "EUR",
            "timezone": "Europe/Berlin",
            "country": "DE",
            "locale": "de-DE",
            "payment_terms_days": 30,
            "contacts": [{"name": "AP", "email": f"ap{n}@example.com", "role": "billing"}],
        },
    )
    assert r.status_code == 201, r.text
    customer_id = r.json()["id"]
    invoice_ids = []
    for k in range(count):
        r = await iclient.post(
            "/v1/invoices",
            json={
                "customer_id": customer_id,
                "number": f"INV-{n}-{k}",
                "external_id": f"ERP-{n}-{k}",
                "issue_date": "2026-02-01",
                "due_date": "2026-03-02",
                "currency": "EUR",
                "lines": [{"description": "Service", "quantity": 1, "unit_price": 10000}],
            },
        )
        assert r.status_code == 201, r.text
        invoice_ids.append(r.json()["id"])
    engine: AsyncEngine = invoice_service.state.engine
    async with engine.connect() as conn:
        rows = (await conn.execute(text("SELECT type, payload FROM outbox ORDER BY id"))).all()
    events = [
        BY_TYPE[t].model_validate(p)
        for t, p in rows
        if p.get("customer_id") == customer_id and t in ("customer.created.v1", "invoice.issued.v1")
    ]
    assert [e.TYPE for e in events] == ["customer.created.v1"] + ["invoice.issued.v1"] * count
    return customer_id, invoice_ids, events


async def _pay(iclient: httpx.AsyncClient, customer_id: str, also: dict[str, Any]) -> None:
    """100.00 EUR by wire at the invoice service (oldest invoice first unless `also` allocates)."""
    r = await iclient.post(
        "/v1/payments",
        json={
            "customer_id": customer_id,
            "amount": 10000,
            "currency": "EUR",
            "method": "wire",
            "received_at": "2026-03-02",
            **also,
        },
    )
    assert r.status_code == 201, r.text


def _last_look(invoice_service: FastAPI) -> InvoiceApiLastLook:
    return InvoiceApiLastLook(
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=invoice_service),
            base_url="http://invoice.test",
            headers={"Authorization": f"Bearer {INVOICE_TOKEN}"},
        )
    )


async def test_paid_at_the_invoice_service_in_the_same_second_is_not_reminded(
    maker: async_sessionmaker[AsyncSession],
    iclient: httpx.AsyncClient,
    invoice_service: FastAPI,
) -> None:
    clock.set(at("2026-02-01 10:00"), freeze=True)
    customer_id, invoice_id, events = await _issue(iclient, invoice_service)
    await feed(maker, *events)
    assert {r.status for r in await steps(maker, invoice_id)} == {"pending"}
    # Paid at the invoice service; its PaymentReceived is NOT delivered to dunning.
    await _pay(iclient, customer_id, {})
    clock.set(at("2026-03-02 08:00"), freeze=True)  # due_today: 09:00 Berlin
    look = _last_look(invoice_service)
    try:
        result = await Scheduler(maker, clock=clock, last_look=look, name="real").run_once()
    finally:
        await look.aclose()
    assert result.emitted == 0
    assert await outbox(maker, "reminder.due.v1") == []
    rows = {r.step_key: r for r in await steps(maker, invoice_id)}
    assert rows["due_today"].status == "cancelled"
    assert "last look" in (rows["due_today"].note or "")


async def test_unpaid_at_the_invoice_service_is_reminded_with_its_balance(
    maker: async_sessionmaker[AsyncSession],
    iclient: httpx.AsyncClient,
    invoice_service: FastAPI,
) -> None:
    clock.set(at("2026-02-01 10:00"), freeze=True)
    customer_id, invoice_id, events = await _issue(iclient, invoice_service)
    await feed(maker, *events)
    clock.set(at("2026-03-02 08:00"), freeze=True)
    look = _last_look(invoice_service)
    try:
        result = await Scheduler(maker, clock=clock, last_look=look, name="real").run_once()
    finally:
        await look.aclose()
    assert result.emitted == 1
    (reminder,) = await outbox(maker, "reminder.due.v1")
    assert reminder["customer_id"] == customer_id
    assert reminder["step_key"] == "due_today"
    assert [(i["invoice_id"], i["balance"]) for i in reminder["invoices"]] == [(invoice_id, 10000)]
    assert {r.step_key: r.status for r in await steps(maker, invoice_id)}["due_today"] == "emitted"


async def test_one_request_per_customer_however_many_invoices_and_the_paid_one_left_out(
    maker: async_sessionmaker[AsyncSession],
    iclient: httpx.AsyncClient,
    invoice_service: FastAPI,
) -> None:
    clock.set(at("2026-02-01 10:00"), freeze=True)
    customer_id, invoice_ids, events = await _issue_many(iclient, invoice_service, 5)
    await feed(maker, *events)
    # The first is paid at the invoice service; dunning has not heard of it.
    await _pay(
        iclient, customer_id, {"allocations": [{"invoice_id": invoice_ids[0], "amount": 10000}]}
    )
    sent: list[httpx.Request] = []

    async def count(request: httpx.Request) -> None:
        sent.append(request)

    # The real client, counting what goes over its transport (an httpx event hook).
    look = InvoiceApiLastLook(
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=invoice_service),
            base_url="http://invoice.test",
            headers={"Authorization": f"Bearer {INVOICE_TOKEN}"},
            event_hooks={"request": [count]},
        )
    )
    clock.set(at("2026-03-02 08:00"), freeze=True)  # due_today for all five
    try:
        result = await Scheduler(maker, clock=clock, last_look=look, name="real").run_once()
    finally:
        await look.aclose()
    assert [(q.url.path, q.url.params.get("customer_id")) for q in sent] == [
        ("/v1/invoices", customer_id)
    ]
    assert result.emitted == 4  # steps, in one notice
    (reminder,) = await outbox(maker, "reminder.due.v1")
    assert sorted(i["invoice_id"] for i in reminder["invoices"]) == sorted(invoice_ids[1:])
    rows = {r.step_key: r for r in await steps(maker, invoice_ids[0])}
    assert rows["due_today"].status == "cancelled"
