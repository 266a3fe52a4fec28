"""The demo seed: the book's shape (pure, seeded), and a small book written end to end over HTTP
to the real invoice, dunning, risk and notify apps (served by uvicorn on free ports), twice."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import secrets
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import uvicorn
from duewise_dev._util import free_port
from duewise_dev.postgres import scratch_database
from duewise_dev.seed import OWNERS, Book, Urls, demo_password, plan_book, seed
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

TODAY = dt.date(2026, 11, 23)
ADMIN_TOKEN = "test-seed-admin-" + secrets.token_hex(16)


# --- the plan ----------------------------------------------------------------------------------


def test_the_book_has_the_shape_of_a_real_ledger() -> None:
    book = plan_book(customers=200, invoices=2000, seed=7, today=TODAY)
    assert book == plan_book(customers=200, invoices=2000, seed=7, today=TODAY)  # deterministic
    assert book != plan_book(customers=200, invoices=2000, seed=8, today=TODAY)
    count = book.count()
    assert count["customers"] == 200
    assert 1900 <= count["invoices"] <= 2100
    assert count["payments"] > 1000
    assert 5 <= count["reversals"] <= 80
    assert 3 <= count["disputes"] <= 40
    assert 5 <= count["promises"] <= 60
    assert count["responses"] >= count["promises"]

    custs = book.customers
    assert len({c.ext for c in custs}) == 200
    assert {c.timezone for c in custs} == {"Europe/Berlin", "America/New_York", "Asia/Tokyo"}
    currencies = Counter(c.currency for c in custs)
    assert set(currencies) == {"EUR", "USD", "JPY"}
    assert currencies["EUR"] > 50
    assert currencies["USD"] > 50
    owners = Counter(c.owner for c in custs)
    assert set(owners) == set(OWNERS)
    assert min(owners.values()) >= 60
    invoices = [i for c in custs for i in c.invoices]
    assert len({i.ext for i in invoices}) == len(invoices)
    assert min(i.issue for i in invoices) >= TODAY - dt.timedelta(days=270)
    assert max(i.issue for i in invoices) <= TODAY
    assert min(i.issue for i in invoices) < TODAY - dt.timedelta(days=240)  # nine months
    assert all(i.due >= i.issue and i.total > 0 and 0 <= i.balance <= i.total for i in invoices)
    assert all(i.total % 100 == 0 for c in custs if c.currency != "JPY" for i in c.invoices)

    by_ext = {i.ext: i for i in invoices}
    payments = [(c, p) for c in custs for p in c.payments]
    assert {p.method for _, p in payments} == {"check", "ach", "card", "wire"}
    assert all(by_ext[p.invoice_ext].issue < p.received < TODAY for _, p in payments)
    late = [p for _, p in payments if p.received > by_ext[p.invoice_ext].due]
    assert 0.2 < len(late) / len(payments) < 0.9
    partial = [p for _, p in payments if p.amount < by_ext[p.invoice_ext].total]
    assert len(partial) > 20
    # Bounced payments leave their invoice's balance open.
    assert all(by_ext[p.invoice_ext].balance > 0 for _, p in payments if p.reverse)
    # A few customers paid by check and lately by card.
    switched = [
        c
        for c in custs
        if {"check", "card"} <= {p.method for p in c.payments}
        and max(c.payments, key=lambda p: p.received).method == "card"
        and min(c.payments, key=lambda p: p.received).method == "check"
    ]
    assert 3 <= len(switched) <= 20

    for c in custs:
        open_exts = {i.ext for i in c.invoices if i.balance > 0}
        assert {ext for ext, _ in c.disputes} <= open_exts
        if c.promise is not None:
            exts, amount, days = c.promise
            assert set(exts) <= open_exts
            assert not {p.invoice_ext for p in c.payments} & set(exts)  # nothing paid on them
            assert amount == sum(by_ext[e].balance for e in exts)
            assert 1 <= days <= 14
    reasons = Counter(r for c in custs for r, _ in c.responses)
    assert {"promise", "dispute"} <= set(reasons)
    assert len(reasons) >= 5


def test_demo_passwords_are_only_predictable_outside_production() -> None:
    assert demo_password("carol", {}) == "demo-carol"
    assert demo_password("carol", {"DUEWISE_ENV": "local"}) == "demo-carol"
    made = demo_password("carol", {"DUEWISE_ENV": "production"})
    assert "carol" not in made
    assert len(made) >= 16


# --- end to end, small --------------------------------------------------------------------------


@dataclass
class Served:
    app: FastAPI
    url: str
    server: uvicorn.Server
    task: asyncio.Task[None]

    @property
    def engine(self) -> AsyncEngine:
        e: AsyncEngine = self.app.state.engine
        return e


async def _serve(app: FastAPI) -> Served:
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    task = asyncio.create_task(server.serve())
    for _ in range(1000):
        if server.started:
            return Served(app, f"http://127.0.0.1:{port}", server, task)
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    raise RuntimeError("uvicorn did not start within 10 s")


async def _stop(served: Served) -> None:
    served.server.should_exit = True
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.wait_for(served.task, 10)


@dataclass
class Stack:
    invoice: Served
    dunning: Served
    risk: Served
    notify: Served
    notify_db: str

    @property
    def urls(self) -> Urls:
        return Urls(self.invoice.url, self.dunning.url, self.risk.url, self.notify.url)


async def _relay(stack: Stack, stop: asyncio.Event) -> None:
    """Hand the invoice outbox's rows to dunning and notify as their consumers would (no
    broker here), a little late, the way the real stack catches up."""
    from duewise_events.envelope import Envelope
    from dunning.handlers import APPLY
    from dunning.handlers import apply as dunning_apply
    from notify.handlers import handle as notify_handle

    seen = 0
    while not stop.is_set():
        async with stack.invoice.engine.connect() as conn:
            rows = (
                await conn.execute(
                    text(
                        "SELECT id, event_id, type, key, time, payload FROM outbox "
                        "WHERE id > :after ORDER BY id"
                    ),
                    {"after": seen},
                )
            ).all()
        for r in rows:
            seen = r.id
            envelope = Envelope(
                id=r.event_id, source="duewise/invoice", type=r.type, time=r.time, key=r.key,
                data=r.payload,
            )  # fmt: skip
            event = envelope.event()
            async with stack.notify.app.state.sessionmaker() as s, s.begin():
                await notify_handle(s, event, envelope)
            if type(event) in APPLY:
                async with stack.dunning.app.state.sessionmaker() as s, s.begin():
                    await dunning_apply(s, event, r.event_id)
        await asyncio.sleep(0.2)


@pytest.fixture(scope="module")
async def stack(pg_server_url: str) -> AsyncIterator[Stack]:
    from dunning.config import Settings as DunningSettings
    from dunning.main import create_app as create_dunning
    from dunning.migrations import upgrade as upgrade_dunning
    from invoice.config import Settings as InvoiceSettings
    from invoice.main import create_app as create_invoice
    from invoice.migrations import upgrade as upgrade_invoice
    from notify.config import Settings as NotifySettings
    from notify.main import create_app as create_notify
    from notify.migrations import upgrade as upgrade_notify
    from risk.config import Settings as RiskSettings
    from risk.main import create_app as create_risk
    from risk.migrations import upgrade as upgrade_risk

    async with (
        scratch_database(pg_server_url, "duewise_invoice_seed", upgrade_invoice) as invoice_db,
        scratch_database(pg_server_url, "duewise_dunning_seed", upgrade_dunning) as dunning_db,
        scratch_database(pg_server_url, "duewise_risk_seed", upgrade_risk) as risk_db,
        scratch_database(pg_server_url, "duewise_notify_seed", upgrade_notify) as notify_db,
    ):
        invoice = await _serve(
            create_invoice(InvoiceSettings(database_url=invoice_db, admin_token=ADMIN_TOKEN))
        )
        dunning = await _serve(
            create_dunning(DunningSettings(database_url=dunning_db, admin_token=ADMIN_TOKEN))
        )
        risk = await _serve(
            create_risk(RiskSettings(database_url=risk_db, admin_token=ADMIN_TOKEN))
        )
        notify = await _serve(
            create_notify(
                NotifySettings(
                    database_url=notify_db, admin_token=ADMIN_TOKEN, invoice_api_url=invoice.url
                )
            )
        )
        try:
            yield Stack(invoice, dunning, risk, notify, notify_db)
        finally:
            for served in (notify, risk, dunning, invoice):
                await _stop(served)


def _small_book() -> Book:
    """Five customers, today, with at least one of everything the seed writes."""
    today = dt.datetime.now(dt.UTC).date()
    for s in range(500):
        book = plan_book(customers=5, invoices=30, seed=s, today=today)
        c = book.count()
        if min(c["promises"], c["responses"], c["disputes"], c["reversals"]) >= 1:
            return book
    raise AssertionError("no small seed has everything")


async def _count(client: httpx.AsyncClient, path: str, **params: Any) -> int:
    n, query = 0, {**params, "limit": 200}
    while True:
        r = await client.get(path, params=query)
        assert r.status_code == 200, r.text
        page = r.json()
        n += len(page["items"])
        if not page.get("next_cursor"):
            return n
        query["cursor"] = page["next_cursor"]


@pytest.mark.slow
async def test_a_small_book_is_written_over_http_and_a_second_run_adds_nothing(
    stack: Stack,
) -> None:
    book = _small_book()
    want = book.count()
    stop = asyncio.Event()
    relay = asyncio.create_task(_relay(stack, stop))
    try:
        first = await seed(
            urls=stack.urls, admin_token=ADMIN_TOKEN, book=book, notify_db_url=stack.notify_db,
            concurrency=3, wait_s=60,
        )  # fmt: skip
        for kind in ("customers", "invoices", "payments", "reversals", "disputes", "promises"):
            assert first.created[kind] == want[kind], kind
        assert first.created["responses"] == want["responses"]
        assert not any(first.existing.values())
        assert first.users == {"admin": "demo-admin", "carol": "demo-carol", "dave": "demo-dave"}

        second = await seed(
            urls=stack.urls, admin_token=ADMIN_TOKEN, book=book, notify_db_url=stack.notify_db,
            concurrency=3, wait_s=60,
        )  # fmt: skip
        assert not any(second.created.values()), second.created
        assert set(second.users) == {"admin", "carol", "dave"}
        assert all("existed" in note for note in second.users.values())
    finally:
        stop.set()
        await relay

    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    async with (
        httpx.AsyncClient(base_url=stack.invoice.url, headers=headers) as inv,
        httpx.AsyncClient(base_url=stack.dunning.url, headers=headers) as dun,
        httpx.AsyncClient(base_url=stack.notify.url, headers=headers) as ntf,
    ):
        assert await _count(inv, "/v1/customers", tag="demo") == want["customers"]
        assert await _count(inv, "/v1/invoices") == want["invoices"]
        assert await _count(inv, "/v1/payments") == want["payments"]
        for owner in OWNERS:
            expected = sum(c.owner == owner for c in book.customers)
            assert await _count(inv, "/v1/customers", owner=owner) == expected
        customers = (await inv.get("/v1/customers", params={"limit": 200})).json()["items"]
        assert {c["timezone"] for c in customers} == {c.timezone for c in book.customers}
        payments = (await inv.get("/v1/payments", params={"limit": 200})).json()["items"]
        assert sum(p["status"] == "reversed" for p in payments) == want["reversals"]
        disputed = await _count(inv, "/v1/invoices", status="disputed")
        assert disputed == want["disputes"]
        assert await _count(dun, "/v1/promises", status="open") == want["promises"]
        assert await _count(ntf, "/v1/responses") == want["responses"]
    async with stack.notify.engine.connect() as conn:
        users = dict((await conn.execute(text("SELECT user_name, role FROM ui_user"))).all())
    assert users == {"admin": "admin", "carol": "collector", "dave": "collector"}
