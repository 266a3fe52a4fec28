"""The set-wise invoice path (service.bulk) against the per-row one (issue_invoice): the same
rows, the same events, the same refusals — against the real PostgreSQL."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path
from typing import Any

import httpx
import pytest
from duewise_service.problems import DomainError
from fastapi import FastAPI
from invoice.imports import import_rows, load_mapping, read_csv
from invoice.imports import runner as runner_module
from invoice.models import InvoiceCreate, InvoiceLineCreate
from invoice.service import issue_invoice
from invoice.service.bulk import issue_invoices
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from .factories import counts, new_customer, new_invoice

DATA = Path(__file__).parent / "data"
IDS = {"invoice_id", "payment_id", "customer_id", "id"}


@pytest.fixture
def maker(app: FastAPI) -> async_sessionmaker[AsyncSession]:
    m: async_sessionmaker[AsyncSession] = app.state.sessionmaker
    return m


def _strip(value: Any) -> Any:
    """`value` without generated ids (recursively), so two runs can be compared."""
    if isinstance(value, dict):
        return {k: _strip(v) for k, v in value.items() if k not in IDS}
    if isinstance(value, list):
        return [_strip(v) for v in value]
    return value


async def _snapshot(engine: AsyncEngine) -> dict[str, Any]:
    """Invoices, lines, payments, allocations and outbox payloads, minus ids and times."""
    async with engine.connect() as conn:

        async def rows(sql: str) -> list[dict[str, Any]]:
            return [dict(r._mapping) for r in await conn.execute(text(sql))]

        return {
            "invoice": await rows(
                "SELECT c.external_id AS customer, i.* FROM invoice i "
                "JOIN customer c ON c.id = i.customer_id ORDER BY i.number"
            ),
            "line": await rows(
                "SELECT i.number, l.* FROM invoice_line l JOIN invoice i ON i.id = l.invoice_id "
                "ORDER BY i.number, l.position"
            ),
            "payment": await rows("SELECT * FROM payment ORDER BY external_id"),
            "allocation": await rows(
                "SELECT i.number, p.external_id, a.* FROM allocation a "
                "JOIN invoice i ON i.id = a.invoice_id JOIN payment p ON p.id = a.payment_id "
                "ORDER BY i.number"
            ),
            "events": await rows(
                "SELECT type, topic, payload FROM outbox WHERE type <> 'customer.created.v1' "
                "ORDER BY type, payload->>'number', payload->>'reference'"
            ),
        }


def _comparable(snap: dict[str, Any]) -> dict[str, Any]:
    drop = IDS | {"created_at", "updated_at"}
    return {
        name: [
            _strip({k: v for k, v in row.items() if k not in drop} if name != "events" else row)
            for row in rows
        ]
        for name, rows in snap.items()
    }


async def _empty_invoices(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await conn.execute(text("TRUNCATE allocation, payment, invoice_line, invoice CASCADE"))
        await conn.execute(text("DELETE FROM outbox WHERE type <> 'customer.created.v1'"))


async def _import(maker: async_sessionmaker[AsyncSession], kind: Any, path: Path) -> Any:
    mapping = load_mapping("sage100")
    _, rows = read_csv(await asyncio.to_thread(path.read_bytes), mapping)
    return await import_rows(
        session_factory=maker,
        kind=kind,
        rows=list(rows),
        mapping=mapping,
        today=dt.date(2026, 11, 23),
    )


async def test_an_import_writes_the_same_rows_and_events_either_way(
    maker: async_sessionmaker[AsyncSession], engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    await _import(maker, "customers", DATA / "sage100_ar_customer.csv")

    async def row_by_row(*_: Any, **__: Any) -> None:
        raise runner_module._RowByRow

    with monkeypatch.context() as m:
        m.setattr(runner_module._Importer, "_invoices_bulk", row_by_row)
        per_row_report = await _import(maker, "invoices", DATA / "sage100_ar_openinvoice.csv")
    per_row = await _snapshot(engine)
    await _empty_invoices(engine)
    row_by_row_batches: list[int] = []
    per_row_path = runner_module._Importer._invoices

    async def spy(self: Any, session: AsyncSession, parsed: Any, batch: Any) -> None:
        row_by_row_batches.append(len(parsed))
        await per_row_path(self, session, parsed, batch)

    with monkeypatch.context() as m:
        m.setattr(runner_module._Importer, "_invoices", spy)
        bulk_report = await _import(maker, "invoices", DATA / "sage100_ar_openinvoice.csv")
    bulk = await _snapshot(engine)

    assert row_by_row_batches == []  # no fallback: the set-wise path did it all
    assert bulk_report == per_row_report
    assert bulk_report.created > 0
    assert bulk_report.rejected > 0  # the file has bad rows too
    assert per_row["payment"]  # and partly paid invoices (opening balance payments)
    assert _comparable(bulk) == _comparable(per_row)


def _items(customers: dict[str, dict[str, Any]]) -> list[InvoiceCreate]:
    eur, po = customers["eur"], customers["po"]

    def item(**kw: Any) -> InvoiceCreate:
        base: dict[str, Any] = {
            "customer_id": eur["id"],
            "issue_date": dt.date(2026, 11, 1),
            "currency": "EUR",
            "total": 5000,
        }
        return InvoiceCreate.model_validate(base | kw)

    line = InvoiceLineCreate(description="Work", quantity=3, unit_price=1500, gl_code="4000")
    return [
        item(number="B-1", external_id="X-1"),
        item(number="B-2", lines=[line, line], total=None, due_date=dt.date(2026, 12, 24)),
        item(number="B-3", customer_id=None, customer_external_id=eur["external_id"]),
        item(number="B-4", customer_id="cus_nope"),  # unknown customer
        item(number="B-5", customer_id=None, customer_external_id="nobody"),  # unknown customer
        item(number="B-6", customer_external_id=po["external_id"]),  # mismatch
        item(number="B-7", currency="USD"),  # currency mismatch
        item(number="B-8", customer_id=po["id"]),  # PO required
        item(number="B-9", customer_id=po["id"], po_number="PO-9"),  # prefs' GL code
        item(number="B-10", lines=[line], total=1),  # total does not match
        item(number="EXISTING"),  # duplicate number of an existing invoice
        item(number="B-11", external_id="EXISTING-X"),  # duplicate existing external id
        item(number="B-1"),  # duplicate number within the batch
        item(number="B-12", external_id="X-1"),  # duplicate external id within the batch
        item(number="B-13", customer_id=po["id"], total=0, po_number="PO-13"),  # paid at once
        item(number="B-4", external_id="X-4"),  # its first try was refused: this one lands
    ]


async def test_bulk_refuses_what_issue_invoice_refuses_and_writes_the_rest(
    client: httpx.AsyncClient, maker: async_sessionmaker[AsyncSession], engine: AsyncEngine
) -> None:
    customers = {
        "eur": await new_customer(client),
        "po": await new_customer(
            client, invoice_preferences={"po_required": True, "customer_gl_code": "6100"}
        ),
    }
    await new_invoice(client, customers["eur"]["id"], number="EXISTING", external_id="EXISTING-X")
    items = _items(customers)

    # The per-row path, one savepoint per item as the importer does it, then rolled back.
    expected: list[str | None] = []
    async with maker() as session:
        for data in items:
            try:
                async with session.begin_nested():
                    await issue_invoice(session=session, data=data)
                expected.append(None)
            except DomainError as exc:
                expected.append(exc.detail)
        per_row = await _snapshot_in(session)
        await session.rollback()
    before = await counts(engine)

    async with maker() as session, session.begin():
        results = await issue_invoices(session=session, items=items)
    got = [r.detail if isinstance(r, DomainError) else None for r in results]

    assert got == expected
    assert got.count(None) == 6
    after = await counts(engine)
    assert after["invoice"] - before["invoice"] == 6
    assert after["invoice_line"] - before["invoice_line"] == 2
    assert after["outbox"] - before["outbox"] == 6
    bulk = await _snapshot(engine)
    assert _comparable(bulk)["invoice"] == per_row["invoice"]
    assert _comparable(bulk)["events"] == per_row["events"]
    paid = next(r for r in bulk["invoice"] if r["number"] == "B-13")
    assert (paid["status"], paid["gl_code"]) == ("paid", "6100")


async def _snapshot_in(session: AsyncSession) -> dict[str, Any]:
    """`_snapshot`'s invoices and events, read inside `session`'s transaction."""

    async def rows(sql: str) -> list[dict[str, Any]]:
        return [dict(r._mapping) for r in await session.execute(text(sql))]

    snap = {
        "invoice": await rows(
            "SELECT c.external_id AS customer, i.* FROM invoice i "
            "JOIN customer c ON c.id = i.customer_id ORDER BY i.number"
        ),
        "events": await rows(
            "SELECT type, topic, payload FROM outbox WHERE type <> 'customer.created.v1' "
            "ORDER BY type, payload->>'number', payload->>'reference'"
        ),
    }
    return _comparable(snap)


async def test_a_batch_the_database_refuses_is_done_again_row_by_row(
    maker: async_sessionmaker[AsyncSession], engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    await _import(maker, "customers", DATA / "sage100_ar_customer.csv")
    expected = await _import(maker, "invoices", DATA / "sage100_ar_openinvoice.csv")
    want = _comparable(await _snapshot(engine))
    await _empty_invoices(engine)
    calls: list[int] = []

    async def broken(*, session: AsyncSession, items: Any, imported: bool) -> Any:
        calls.append(len(items))
        await session.execute(text("SELECT 1 / 0"))  # a database error mid-batch

    monkeypatch.setattr(runner_module, "issue_invoices", broken)
    report = await _import(maker, "invoices", DATA / "sage100_ar_openinvoice.csv")

    assert calls  # the set-wise path was tried
    assert report == expected
    assert _comparable(await _snapshot(engine)) == want


async def test_a_rerun_skips_everything_and_writes_nothing(
    maker: async_sessionmaker[AsyncSession], engine: AsyncEngine
) -> None:
    await _import(maker, "customers", DATA / "sage100_ar_customer.csv")
    first = await _import(maker, "invoices", DATA / "sage100_ar_openinvoice.csv")
    before = await counts(engine)
    again = await _import(maker, "invoices", DATA / "sage100_ar_openinvoice.csv")
    assert first.created > 0
    assert (again.created, again.skipped) == (0, first.created)
    assert await counts(engine) == before
