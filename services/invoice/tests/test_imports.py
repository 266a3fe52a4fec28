"""Bulk import of ERP exports: Sage 100 and generic mappings, idempotency, rejected rows,
exact money, the HTTP endpoint and the CLI — against the real PostgreSQL."""

from __future__ import annotations

import asyncio
import csv
import os
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from invoice.imports import ImportReport, Kind, Mapping, import_rows, load_mapping, read_csv
from invoice.imports.mapping import EXAMPLES, mapping_from_text
from invoice.imports.parse import RowError, RowParser, decimal_to_minor, normalize_phone
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from .factories import counts, new_customer, outbox_rows

DATA = Path(__file__).parent / "data"
CUSTOMERS = DATA / "sage100_ar_customer.csv"
INVOICES = DATA / "sage100_ar_openinvoice.csv"
RECEIPTS = DATA / "sage100_cash_receipts.csv"


@pytest.fixture(scope="session")
def imports_app(app: FastAPI) -> FastAPI:
    """The real app, which must serve the import endpoint."""
    assert "/v1/imports/{kind}" in app.openapi()["paths"]
    return app


@pytest.fixture
def maker(app: FastAPI) -> async_sessionmaker[AsyncSession]:
    m: async_sessionmaker[AsyncSession] = app.state.sessionmaker
    return m


async def run_file(
    maker: async_sessionmaker[AsyncSession],
    kind: Kind,
    path: Path | str,
    mapping: Mapping | None = None,
    **kw: Any,
) -> ImportReport:
    chosen = mapping or load_mapping("sage100")
    data = await asyncio.to_thread(path.read_bytes) if isinstance(path, Path) else path
    _, rows = read_csv(data, chosen)
    return await import_rows(
        session_factory=maker, kind=kind, rows=list(rows), mapping=chosen, **kw
    )


def rejects(report: ImportReport) -> dict[int, tuple[str | None, str]]:
    return {r.row: (r.column, r.reason) for r in report.rejected_rows}


async def event_count(engine: AsyncEngine) -> dict[str, int]:
    async with engine.connect() as conn:
        rows = await conn.execute(text("SELECT type, count(*) FROM outbox GROUP BY type"))
        return {str(t): int(n) for t, n in rows.all()}


async def one(engine: AsyncEngine, sql: str, **params: Any) -> dict[str, Any]:
    async with engine.connect() as conn:
        return dict((await conn.execute(text(sql), params)).mappings().one())


# --- money, dates, phones: pure functions -------------------------------------------------


def test_money_is_converted_exactly_with_the_currency_exponent() -> None:
    assert decimal_to_minor("1234.50", 2) == 123450
    assert decimal_to_minor("1234.5", 2) == 123450
    assert decimal_to_minor("1234.500", 2) == 123450  # the extra digit is a zero: exact
    assert decimal_to_minor("1,234.50", 2, thousands=",") == 123450
    assert decimal_to_minor("0.01", 2) == 1
    assert decimal_to_minor("100", 0) == 100  # JPY
    assert decimal_to_minor("1.234", 3) == 1234  # KWD
    assert decimal_to_minor("(12.00)", 2) == -1200
    assert decimal_to_minor("19999999999999.99", 2) == 1999999999999999  # no float rounding
    for bad, exp in [("0.005", 2), ("100.5", 0), ("1.2345", 3), ("1e3", 2), ("NaN", 2)]:
        with pytest.raises(ValueError, match=r"decimals|decimal amount"):
            decimal_to_minor(bad, exp)


def test_phone_numbers_become_e164_where_the_country_tells() -> None:
    assert normalize_phone("(414) 555-4787", "US") == "+14145554787"
    assert normalize_phone("1-800-555-0100 ext. 12", "US") == "+18005550100"
    assert normalize_phone("+49 30 123456", "DE") == "+4930123456"
    assert normalize_phone("0049 30 123456", "DE") == "+4930123456"


def test_a_row_error_names_row_and_column() -> None:
    parser = RowParser(load_mapping("sage100"), "invoices")
    row = {
        "ARDivisionNo": "01",
        "CustomerNo": "ABF",
        "InvoiceNo": "1",
        "InvoiceType": "IN",
        "InvoiceDate": "31/12/2026",
        "Balance": "1.00",
    }
    with pytest.raises(RowError) as err:
        parser.parse(7, row)
    assert (err.value.row, err.value.column) == (7, "InvoiceDate")
    assert "'31/12/2026' is not a date" in err.value.reason
    both = parser.parse(8, row | {"InvoiceDate": "12/31/2026"})
    iso = parser.parse(9, row | {"InvoiceDate": "2026-12-31"})
    assert both.data.issue_date == iso.data.issue_date  # type: ignore[union-attr]


def test_mappings_load_and_refuse_unknown_fields(tmp_path: Path) -> None:
    example = load_mapping(str(EXAMPLES / "generic-example.yaml"))
    assert example.name == "generic-example"
    assert load_mapping("generic-example") == example
    toml = tmp_path / "erp.toml"
    toml.write_text('name = "erp"\n[customers.fields]\nexternal_id = "No"\nname = "Name"\n')
    assert load_mapping(str(toml)).for_kind("customers").fields["name"] == "Name"
    with pytest.raises(ValueError, match="unknown duewise field"):
        mapping_from_text('{"name": "x", "customers": {"fields": {"nmae": "Name"}}}')
    with pytest.raises(ValueError, match="not a known name"):
        load_mapping("/etc/passwd", allow_files=False)


# --- Sage 100 end to end -------------------------------------------------------------------


async def test_sage100_import_is_right_idempotent_and_reports_bad_rows(
    app: FastAPI, maker: async_sessionmaker[AsyncSession], engine: AsyncEngine
) -> None:
    seen: list[int] = []
    customers = await run_file(maker, "customers", CUSTOMERS, progress=seen.append)
    assert (customers.created, customers.updated, customers.skipped) == (5, 0, 0)
    assert sum(seen) == customers.rows == 9
    assert rejects(customers) == {
        7: ("CustomerName", "is empty"),
        8: ("CreditLimit", "'100.005' has more decimals than the currency allows (2)"),
        9: ("EmailAddress", rejects(customers)[9][1]),
        10: ("ARDivisionNo+CustomerNo", "duplicate: row 2 has the same external_id '01-ABF'"),
    }
    assert "email" in rejects(customers)[9][1]
    assert customers.rejected_rows[0].values["CustomerNo"] == "EMPTY"
    assert (await event_count(engine)) == {"customer.created.v1": 5}

    abf = await one(engine, "SELECT * FROM customer WHERE external_id = '01-ABF'")
    assert (abf["credit_limit"], abf["timezone"], abf["country"]) == (
        2500000,
        "America/Chicago",
        "US",
    )
    contact = await one(engine, "SELECT * FROM contact WHERE customer_id = :c", c=abf["id"])
    assert (contact["name"], contact["email"], contact["phone"]) == (
        "ARTIE",
        "artie@abf.example",
        "+14145554787",
    )
    avnet = await one(engine, "SELECT * FROM customer WHERE external_id = '01-AVNET'")
    assert avnet["timezone"] == "America/Los_Angeles"
    assert avnet["invoice_preferences"]["cc"] == ["controller@avnet.example"]
    capri = await one(engine, "SELECT * FROM customer WHERE external_id = '01-CAPRI'")
    assert (capri["country"], capri["timezone"], capri["credit_limit"]) == (
        "CA",
        "America/Toronto",
        1200050,
    )

    invoices = await run_file(maker, "invoices", INVOICES)
    assert (invoices.created, invoices.skipped, invoices.rejected) == (6, 0, 6)
    bad = rejects(invoices)
    assert bad[8][0] == "ARDivisionNo+CustomerNo"
    assert "unknown customer '01-ZZTOP'" in bad[8][1]
    assert bad[9] == ("OriginalInvoiceAmt", "'abc' is not a decimal amount (e.g. 1234.50)")
    assert bad[10][0] == "InvoiceDueDate"
    assert "before issue_date" in bad[10][1]
    assert bad[11][0] == "InvoiceType"
    assert "'CM'" in bad[11][1]
    assert bad[12][0] == "Balance"
    assert "more than the invoice amount" in bad[12][1]
    assert bad[13][1].startswith("duplicate: row 2")
    events = await event_count(engine)
    assert events["invoice.issued.v1"] == 6
    assert events["payment.received.v1"] == 1  # the opening balance of 0100124

    full = await one(engine, "SELECT * FROM invoice WHERE number = '0100123'")
    assert (full["total"], full["balance"], full["status"]) == (123450, 123450, "open")
    assert full["po_number"] == "PO-4411"
    partial = await one(engine, "SELECT * FROM invoice WHERE number = '0100124'")
    assert (partial["total"], partial["balance"], partial["status"]) == (
        200000,
        75025,
        "partially_paid",
    )
    opening = await one(engine, "SELECT * FROM payment WHERE external_id LIKE 'opening:%'")
    assert (opening["amount"], opening["method"], opening["unallocated"]) == (124975, "other", 0)
    fee = await one(engine, "SELECT * FROM invoice WHERE number = 'FC00017'")
    assert (fee["kind"], fee["total"]) == ("fee", 1275)
    termed = await one(engine, "SELECT * FROM invoice WHERE number = '0100126'")
    assert str(termed["due_date"]) == "2026-12-05"  # no due date: the customer's 30 days

    payments = await run_file(maker, "payments", RECEIPTS)
    assert (payments.created, payments.skipped, payments.rejected) == (4, 0, 5)
    bad = rejects(payments)
    assert bad[6][0] == "InvoiceNo"
    assert "unknown invoice '9999999'" in bad[6][1]
    assert bad[7] == ("CashReceived", "'0.005' has more decimals than the currency allows (2)")
    assert bad[8][0] == "CashReceived"
    assert "open balance" in bad[8][1]
    assert bad[9][0] == "ARDivisionNo+CustomerNo"
    assert bad[10] == ("CashReceived", "'-50.00' is negative")
    assert (await event_count(engine))["payment.received.v1"] == 1 + 4
    paid = await one(engine, "SELECT * FROM invoice WHERE number = '0100123'")
    assert (paid["balance"], paid["status"]) == (0, "paid")
    on_account = await one(engine, "SELECT * FROM payment WHERE reference = '2231'")
    assert (on_account["unallocated"], on_account["method"]) == (30000, "check")
    card = await one(engine, "SELECT * FROM payment WHERE reference = 'VISA-01'")
    assert card["method"] == "card"

    # Re-running the same files creates nothing and stages no event.
    before_rows, before_events = await counts(engine), await event_count(engine)
    again = [
        await run_file(maker, "customers", CUSTOMERS),
        await run_file(maker, "invoices", INVOICES),
        await run_file(maker, "payments", RECEIPTS),
    ]
    assert [(r.created, r.updated, r.skipped) for r in again] == [(0, 0, 5), (0, 0, 6), (0, 0, 4)]
    assert [r.rejected for r in again] == [4, 6, 5]
    assert await counts(engine) == before_rows
    assert await event_count(engine) == before_events


async def test_a_changed_customer_is_updated_once_with_one_event(
    app: FastAPI, maker: async_sessionmaker[AsyncSession], engine: AsyncEngine
) -> None:
    await run_file(maker, "customers", CUSTOMERS)
    changed = CUSTOMERS.read_text().replace(
        "American Business Futures,2131", "American Business Futures LLC,2131"
    )
    report = await run_file(maker, "customers", changed)
    assert (report.created, report.updated, report.skipped) == (0, 1, 4)
    assert (await event_count(engine)).get("customer.updated.v1") == 1
    abf = await one(engine, "SELECT name FROM customer WHERE external_id = '01-ABF'")
    assert abf["name"] == "American Business Futures LLC"
    again = await run_file(maker, "customers", changed)
    assert (again.updated, again.skipped) == (0, 5)


async def test_small_batches_and_a_currency_mismatch(
    app: FastAPI,
    client: httpx.AsyncClient,
    maker: async_sessionmaker[AsyncSession],
    engine: AsyncEngine,
) -> None:
    await new_customer(client, external_id="01-EURO", currency="EUR")
    await run_file(maker, "customers", CUSTOMERS)
    csv_text = (
        "ARDivisionNo,CustomerNo,InvoiceNo,InvoiceType,InvoiceDate,InvoiceDueDate,Balance\n"
        "01,EURO,E-1,IN,11/01/2026,12/01/2026,100.00\n"
        + "".join(f"01,ABF,B-{i},IN,11/01/2026,12/01/2026,{i}.25\n" for i in range(1, 8))
    )
    report = await run_file(maker, "invoices", csv_text, batch_size=3)
    assert (report.created, report.rejected) == (7, 1)
    assert report.rejected_rows[0].row == 2
    assert "is billed in EUR" in report.rejected_rows[0].reason
    assert (await event_count(engine))["invoice.issued.v1"] == 7


# --- a generic mapping file ------------------------------------------------------------------


async def test_the_generic_mapping_file_imports_any_erp(
    app: FastAPI, maker: async_sessionmaker[AsyncSession], engine: AsyncEngine
) -> None:
    mapping = load_mapping(str(EXAMPLES / "generic-example.yaml"))
    customers = (
        "customer_no;company;currency;country;time_zone;language;terms_days;credit_limit;"
        "ap_contact;ap_email;ap_phone;po_required;their_gl_account\n"
        "K-1;Kunde Eins GmbH;EUR;DE;;;14;5000.00;Buchhaltung;rechnung@eins.example;"
        "+49 30 123456;yes;6100-200\n"
        "K-2;Kunde Zwei AG;CHF;CH;Europe/Zurich;de-CH;;;;;;no;\n"
    ).replace(";", ",")
    report = await run_file(maker, "customers", customers, mapping)
    assert (report.created, report.rejected) == (2, 0), report.rejected_rows
    eins = await one(engine, "SELECT * FROM customer WHERE external_id = 'K-1'")
    assert (eins["timezone"], eins["payment_terms_days"], eins["credit_limit"]) == (
        "Europe/Berlin",
        14,
        500000,
    )
    assert eins["invoice_preferences"]["po_required"] is True
    assert eins["tags"] == ["erp-import"]

    invoices = (
        "customer_no,document_no,doc_type,document_date,due_date,currency,amount,open_amount,po\n"
        "K-1,R-100,INV,2026-11-01,2026-12-01,EUR,119.00,119.00,PO-1\n"
        "K-1,R-101,INV,01.11.2026,,EUR,50.00,20.00,PO-2\n"
        "K-1,R-102,INV,2026-11-01,2026-12-01,EUR,10.00,10.00,\n"
        "K-2,R-103,CRN,2026-11-01,2026-12-01,CHF,10.00,10.00,\n"
    )
    report = await run_file(maker, "invoices", invoices, mapping)
    assert report.created == 2
    bad = rejects(report)
    assert bad[4][0] == "po"
    assert "purchase order" in bad[4][1]
    assert bad[5][0] == "doc_type"
    r101 = await one(engine, "SELECT * FROM invoice WHERE number = 'R-101'")
    assert (r101["total"], r101["balance"], str(r101["due_date"])) == (5000, 2000, "2026-11-15")

    payments = (
        "customer_no,receipt_id,amount_cents,currency,value_date,bank_reference,document_no,channel\n"
        "K-1,BANK-1,11900,EUR,2026-12-01,SEPA 77,R-100,SEPA\n"
        "K-1,BANK-2,119.00,EUR,2026-12-01,SEPA 78,,SEPA\n"
    )
    report = await run_file(maker, "payments", payments, mapping)
    assert report.created == 1
    assert rejects(report)[3] == (
        "amount_cents",
        "'119.00' is not an integer amount in minor units",
    )
    pay = await one(engine, "SELECT * FROM payment WHERE external_id = 'BANK-1'")
    assert (pay["amount"], pay["method"], pay["unallocated"]) == (11900, "sepa", 0)


# --- HTTP ------------------------------------------------------------------------------------


async def test_http_import_multipart_and_csv_body(
    imports_app: FastAPI, client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    r = await client.post(
        "/v1/imports/customers",
        files={"file": ("AR_Customer.csv", CUSTOMERS.read_bytes(), "text/csv")},
        data={"mapping": "sage100"},
    )
    assert r.status_code == 201, r.text
    body = r.json()
    assert (body["created"], body["rejected"]) == (5, 4)
    assert body["rejected_rows"][0] == {
        "row": 7,
        "column": "CustomerName",
        "reason": "is empty",
        "values": body["rejected_rows"][0]["values"],
    }

    r = await client.post(
        "/v1/imports/invoices?mapping=sage100",
        content=INVOICES.read_bytes(),
        headers={"Content-Type": "text/csv"},
    )
    assert r.status_code == 201, r.text
    assert (r.json()["created"], r.json()["rejected"]) == (6, 6)

    r = await client.post(
        "/v1/imports/customers",
        files={"file": ("AR_Customer.csv", CUSTOMERS.read_bytes(), "text/csv")},
    )
    assert (r.status_code, r.json()["created"], r.json()["skipped"]) == (201, 0, 5)
    assert len(await outbox_rows(engine, "customer.created.v1")) == 5


async def test_http_import_refuses_a_file_it_cannot_use(
    imports_app: FastAPI, client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    missing = "ARDivisionNo,CustomerName\n01,Acme\n"
    r = await client.post(
        "/v1/imports/customers", content=missing, headers={"Content-Type": "text/csv"}
    )
    assert r.status_code == 422
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["field"] == "CustomerNo"
    assert "CustomerNo" in r.json()["detail"]

    r = await client.post(
        "/v1/imports/customers",
        files={"file": ("x.csv", b"", "text/csv")},
        data={"mapping": "sage100"},
    )
    assert (r.status_code, r.json()["field"]) == (422, "file")

    r = await client.post(
        "/v1/imports/customers",
        files={"file": ("x.csv", CUSTOMERS.read_bytes(), "text/csv")},
        data={"mapping": "/etc/passwd"},
    )
    assert (r.status_code, r.json()["field"]) == (422, "mapping")
    assert (await counts(engine))["customer"] == 0

    r = await client.post("/v1/tokens", json={"name": "ar desk", "role": "collector"})
    collector = {"Authorization": f"Bearer {r.json()['token']}"}
    r = await client.post(
        "/v1/imports/customers", content=CUSTOMERS.read_bytes(), headers=collector
    )
    assert r.status_code == 403
    r = await client.post(
        "/v1/tokens", json={"name": "imp", "role": "service", "scopes": ["import:write"]}
    )
    only_import = {"Authorization": f"Bearer {r.json()['token']}"}
    r = await client.post(
        "/v1/imports/payments", content=RECEIPTS.read_bytes(), headers=only_import
    )
    assert r.status_code == 403
    assert "payments:write" in r.json()["detail"]


# --- CLI -------------------------------------------------------------------------------------

CLI = (
    "from invoice.cli import app\n"
    "from invoice.imports.commands import import_app\n"
    "app.add_typer(import_app, name='import')\n"
    "app(prog_name='invoice')\n"
)


async def run_cli(db_url: str, *args: str) -> tuple[int, str]:
    env = {**os.environ, "DATABASE_URL": db_url, "COLUMNS": "200"}
    env.pop("INVOICE_DATABASE_URL", None)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        CLI,
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode or 0, out.decode()


async def test_cli_imports_with_progress_summary_and_report(
    app: FastAPI, invoice_db_url: str, engine: AsyncEngine, tmp_path: Path
) -> None:
    report = tmp_path / "rejected.csv"
    code, out = await run_cli(
        invoice_db_url, "import", "customers", str(CUSTOMERS), "--mapping", "sage100",
        "--report", str(report),
    )  # fmt: skip
    assert code == 0, out
    assert "importing customers" in out
    assert "created" in out
    assert "rejected" in out
    with report.open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(r["row"], r["column"]) for r in rows] == [
        ("7", "CustomerName"),
        ("8", "CreditLimit"),
        ("9", "EmailAddress"),
        ("10", "ARDivisionNo+CustomerNo"),
    ]
    assert rows[0]["CustomerNo"] == "EMPTY"
    assert len(await outbox_rows(engine, "customer.created.v1")) == 5

    code, out = await run_cli(invoice_db_url, "import", "customers", str(CUSTOMERS))
    assert code == 0, out
    assert len(await outbox_rows(engine, "customer.created.v1")) == 5

    missing = tmp_path / "missing.csv"
    missing.write_text("ARDivisionNo,CustomerName\n01,Acme\n")
    code, out = await run_cli(invoice_db_url, "import", "customers", str(missing))
    assert code == 2
    assert "CustomerNo" in out
