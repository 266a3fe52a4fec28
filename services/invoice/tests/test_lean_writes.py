"""The lean write path (service/sql.py): issuing and paying through asyncpg statements keeps
what the ORM path gave — audit rows with the actor and trace, the trace in the outbox, the
same problems, one transaction — against the real PostgreSQL."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from invoice.models import Invoice, InvoiceCreate, PaymentCreate
from invoice.service import issue_invoice, record_payment
from invoice.service.sql import driver_connection
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from .factories import counts, invoice_payload, new_customer, new_invoice, payment_payload


def _traceparent() -> tuple[str, str]:
    trace_id = os.urandom(16).hex()
    return trace_id, f"00-{trace_id}-{os.urandom(8).hex()}-01"


async def _rows(engine: AsyncEngine, sql: str, **params: Any) -> list[dict[str, Any]]:
    async with engine.connect() as conn:
        return [dict(r._mapping) for r in await conn.execute(text(sql), params)]


async def test_issue_and_pay_leave_audit_rows_with_actor_and_trace_and_the_trace_in_the_outbox(
    client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    customer = await new_customer(client)
    issue_trace, issue_parent = _traceparent()
    body = invoice_payload(customer["id"], lines=[
        {"description": "A", "quantity": 2, "unit_price": 500},
        {"description": "B", "quantity": 1, "unit_price": 250},
    ])  # fmt: skip
    r = await client.post("/v1/invoices", json=body, headers={"traceparent": issue_parent})
    assert r.status_code == 201, r.text
    invoice = r.json()
    assert [ln["amount"] for ln in invoice["lines"]] == [1000, 250]
    assert (invoice["total"], invoice["balance"], invoice["status"]) == (1250, 1250, "open")

    pay_trace, pay_parent = _traceparent()
    r = await client.post(
        "/v1/payments",
        json=payment_payload(
            customer["id"], 1000, allocations=[{"invoice_id": invoice["id"], "amount": 1000}]
        ),
        headers={"traceparent": pay_parent},
    )
    assert r.status_code == 201, r.text
    payment = r.json()
    assert payment["allocations"] == [{"invoice_id": invoice["id"], "amount": 1000}]
    assert payment["unallocated"] == 0

    audit = await _rows(
        engine,
        "SELECT entity, action, actor, request, trace_id, after FROM audit.audit_log"
        " WHERE trace_id = ANY(:t) ORDER BY id",
        t=[issue_trace, pay_trace],
    )
    issued = [(a["entity"], a["action"]) for a in audit if a["trace_id"] == issue_trace]
    assert sorted(issued) == [("invoice", "insert")] + [("invoice_line", "insert")] * 2
    paid = [a for a in audit if a["trace_id"] == pay_trace]
    assert sorted((a["entity"], a["action"]) for a in paid) == [
        ("allocation", "insert"),
        ("invoice", "update"),
        ("payment", "insert"),
    ]
    update = next(a for a in paid if a["entity"] == "invoice")
    assert update["after"]["balance"] == 250
    assert update["after"]["status"] == "partially_paid"
    assert {a["actor"] for a in audit} == {"DUEWISE_ADMIN_TOKEN"}
    assert {a["request"] for a in paid} == {"POST /v1/payments"}

    outbox = await _rows(engine, "SELECT type, key, traceparent, payload FROM outbox ORDER BY id")
    by_type = {o["type"]: o for o in outbox}
    assert by_type["invoice.issued.v1"]["traceparent"].split("-")[1] == issue_trace
    assert by_type["payment.received.v1"]["traceparent"].split("-")[1] == pay_trace
    received = by_type["payment.received.v1"]["payload"]
    assert received["allocations"] == [
        {
            "invoice_id": invoice["id"],
            "amount": 1000,
            "invoice_balance": 250,
            "invoice_status": "partially_paid",
            "due_date": invoice["due_date"],
        }
    ]
    assert by_type["payment.received.v1"]["key"] == customer["id"]
    stored = await _rows(
        engine, "SELECT balance, status FROM invoice WHERE id = :i", i=invoice["id"]
    )
    assert stored == [{"balance": 250, "status": "partially_paid"}]


async def test_values_postgresql_cannot_hold_are_422_and_write_nothing(
    client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    customer = await new_customer(client)
    before = await counts(engine)
    too_many = [{"description": "Bolts", "quantity": 3_000_000_000, "unit_price": 1}]
    nul = [{"description": "Bo\u0000lts", "quantity": 1, "unit_price": 1}]
    for lines in (too_many, nul):
        r = await client.post("/v1/invoices", json=invoice_payload(customer["id"], lines=lines))
        assert r.status_code == 422, r.text
        assert r.headers["content-type"].startswith("application/problem+json")
        assert r.json()["type"].endswith("/invalid-value")
    r = await client.post(
        "/v1/payments", json=payment_payload(customer["id"], 100, reference="x\u0000y")
    )
    assert r.status_code == 422, r.text
    assert await counts(engine) == before


async def test_a_unique_race_the_checks_cannot_see_is_a_409_conflict(
    client: httpx.AsyncClient, app: FastAPI, engine: AsyncEngine
) -> None:
    """Two customers' payments with one external id: the second waits on the unique index
    for the first's transaction, and is refused when it commits."""
    first, second = await new_customer(client), await new_customer(client)
    maker: async_sessionmaker[AsyncSession] = app.state.sessionmaker
    async with maker() as session, session.begin():
        await record_payment(
            session=session,
            data=PaymentCreate.model_validate(
                payment_payload(first["id"], 100, external_id="BANK-1", allocations=[])
            ),
        )
        racing = asyncio.create_task(
            client.post(
                "/v1/payments",
                json=payment_payload(second["id"], 100, external_id="BANK-1", allocations=[]),
            )
        )
        await asyncio.sleep(0.5)
        assert not racing.done()  # blocked on the uncommitted first payment's index entry
    r = await racing
    assert r.status_code == 409, r.text
    assert r.json()["type"].endswith("/conflict")
    rows = await _rows(engine, "SELECT customer_id FROM payment WHERE external_id = 'BANK-1'")
    assert rows == [{"customer_id": first["id"]}]


async def test_outside_a_request_the_write_is_in_the_callers_transaction_and_its_rows_current(
    client: httpx.AsyncClient, app: FastAPI, engine: AsyncEngine
) -> None:
    """A consumer or the import holds invoices through the ORM: after a payment they read
    the new balance, and a rollback (no actor, no statement before) undoes everything."""
    customer = await new_customer(client)
    invoice = await new_invoice(client, customer["id"])
    before = await counts(engine)
    maker: async_sessionmaker[AsyncSession] = app.state.sessionmaker
    async with maker() as session, session.begin():
        held = (await session.scalars(select(Invoice).where(Invoice.id == invoice["id"]))).one()
        recorded = await record_payment(
            session=session,
            data=PaymentCreate.model_validate(payment_payload(customer["id"], 4000)),
        )
        assert recorded.allocations[0].invoice_id == invoice["id"]
        assert (held.balance, held.status) == (6000, "partially_paid")
        await session.rollback()
    assert await counts(engine) == before
    stored = await _rows(engine, "SELECT balance FROM invoice WHERE id = :i", i=invoice["id"])
    assert stored == [{"balance": 10000}]


async def test_a_connection_lost_under_the_write_is_a_503_and_leaves_the_pool(
    client: httpx.AsyncClient, app: FastAPI, engine: AsyncEngine
) -> None:
    """The server going away mid-write (here: the backend terminated) is the database being
    unavailable, as on the ORM path: ConnectionError (problems.py: 503 database-unavailable),
    and the dead connection is not handed to the next request."""
    customer = await new_customer(client)
    maker: async_sessionmaker[AsyncSession] = app.state.sessionmaker

    async def write_on_a_terminated_connection() -> None:
        async with maker() as session, session.begin():
            pid = (await driver_connection(session)).get_server_pid()
            async with engine.connect() as other:
                await other.execute(text("SELECT pg_terminate_backend(:p)"), {"p": pid})
            await issue_invoice(
                session=session,
                data=InvoiceCreate.model_validate(invoice_payload(customer["id"])),
            )

    with pytest.raises(ConnectionError):
        await write_on_a_terminated_connection()
    pool_size: int = engine.sync_engine.pool.size()  # type: ignore[attr-defined]
    for _ in range(pool_size):  # whichever connection comes next
        r = await client.post("/v1/invoices", json=invoice_payload(customer["id"]))
        assert r.status_code == 201, r.text


def test_a_fresh_process_reads_snapshot_rows_before_any_orm_use() -> None:
    """The first request of a new API process may be an invoice: its rows are built with
    model_construct, whose attributes need the mappers configured (invoice.models does it)."""
    code = (
        "from invoice.models import InvoiceCreate\n"
        "from invoice.service.invoices import new_invoice, new_lines, price_invoice\n"
        "from invoice.service.sql import LockedCustomer\n"
        "c = LockedCustomer('cus_1', None, 'EUR', {}, 30)\n"
        "d = InvoiceCreate(customer_id='cus_1', number='N', issue_date='2026-01-01',\n"
        "    currency='EUR', lines=[{'description': 'a', 'quantity': 2, 'unit_price': 5}])\n"
        "p = price_invoice(d, c)\n"
        "i = new_invoice(d, c, p, snapshot=True)\n"
        "assert new_lines(i, d, p, snapshot=True)[0].invoice_id == i.id\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
