"""Bulk import of open invoices from a Sage 100 AR_OpenInvoice export, every event published.

Customers first (an AR_Customer export, imported and drained before the clock starts), then
the invoices: the clock runs from the start of the import until the outbox is empty, and the
topic is then read back to check one invoice.issued.v1 per imported row, by event id.
"""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import os
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
from duewise_events import topic_reader
from invoice.imports.mapping import Kind

from bench.cpu import CpuMeter, share
from bench.outbox import TopicCheck, check_topic, outbox_mark, wait_drained
from bench.report import Row, pct, verdict
from bench.stack import TOPIC, Log, Stack

MAPPING = "sage100"
CUSTOMER_COLUMNS = (
    "ARDivisionNo", "CustomerNo", "CustomerName", "AddressLine1", "City", "State", "ZipCode",
    "CountryCode", "TelephoneNo", "EmailAddress", "ContactCode", "TermsCode", "CreditLimit",
)  # fmt: skip
INVOICE_COLUMNS = (
    "ARDivisionNo", "CustomerNo", "InvoiceNo", "HeaderSeqNo", "InvoiceType", "InvoiceDate",
    "InvoiceDueDate", "OriginalInvoiceAmt", "Balance", "CustomerPONo", "TermsCode",
)  # fmt: skip
_STATES = ("NY", "CA", "TX", "IL", "WA", "FL", "OH", "CO")


@dataclass
class ImportOutcome:
    rows: int  # invoice rows in the CSV
    imported: int  # invoices in the database afterwards
    import_s: float  # the importer alone
    wall_s: float  # import start -> outbox empty
    check: TopicCheck
    how: str
    notes: list[str] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.imported / self.wall_s

    def table_rows(self, copy_rate: float, target: float) -> list[Row]:
        ratio = self.rate / copy_rate
        return [
            Row("bulk import, open invoices, all events published",
                f"{self.rate:,.0f} rows/s", f"{copy_rate:,.0f} COPY rows/s", pct(ratio),
                f">= {target:.0%} of COPY", verdict(ratio >= target)),
            Row("  rows imported / invoice.issued.v1 on topic",
                f"{self.imported:,} / {self.check.found:,}", target="equal, = rows in CSV",
                verdict=verdict(self.check.ok and self.imported == self.rows == self.check.found)),
        ]  # fmt: skip


async def run(
    stack: Stack,
    *,
    rows: int,
    log: Log,
    meter: CpuMeter,
    customers: int = 500,
    via: str = "library",
) -> ImportOutcome:
    work = stack.work_dir
    cust_csv, inv_csv = work / "AR_Customer.csv", work / "AR_OpenInvoice.csv"
    _write_customers(cust_csv, customers)
    _write_invoices(inv_csv, rows, customers)
    dsn = stack.invoice_db_url

    log(f"import: {customers} customers ({MAPPING} AR_Customer), then drain")
    await _import("customers", cust_csv, stack, log, via=via)
    await wait_drained(dsn, timeout_s=120)

    mark = await outbox_mark(dsn)
    since = await topic_reader.end_offsets(stack.bootstrap, TOPIC)
    before = await _count_invoices(dsn)
    log(f"import: {rows:,} open invoices ({MAPPING} AR_OpenInvoice), timed until published")
    meter.start()
    own_cpu = time.process_time()
    t0 = time.perf_counter()
    how = await _import("invoices", inv_csv, stack, log, via=via)
    t_imported = time.perf_counter()
    t_drained = await wait_drained(dsn, timeout_s=600)
    cpu = meter.stop()
    if via != "cli":
        cpu["importer (bench process)"] = time.process_time() - own_cpu
    imported = await _count_invoices(dsn) - before
    wall = max(t_drained, t_imported) - t0
    log(f"  {imported:,} rows in {t_imported - t0:.2f}s, all published after {wall:.2f}s; "
        "reading the topic back")  # fmt: skip
    check = await check_topic(
        dsn, stack.bootstrap, after_id=mark, event_type="invoice.issued.v1", since=since
    )
    log(f"  {check.found:,} of {check.expected:,} invoice.issued.v1 found on {TOPIC} "
        f"({check.records:,} records incl. duplicates)")  # fmt: skip
    outcome = ImportOutcome(rows, imported, t_imported - t0, wall, check, how)
    outcome.notes.append(
        f"Bulk import: {rows:,} rows of a generated Sage 100 AR_OpenInvoice CSV across "
        f"{customers} customers (imported first, not timed), via {how}; importer "
        f"{t_imported - t0:.2f}s, outbox empty {wall:.2f}s after the start "
        f"(relay lag {t_drained - t_imported:.2f}s). Topic check by ce_id: "
        f"{check.found:,}/{check.expected:,} found, {check.records:,} records"
        + (f"; missing e.g. {list(check.missing_sample)}" if check.missing_sample else "")
        + "."
    )
    outcome.notes.append(f"CPU during the timed import, in cores: {share(cpu, wall)}.")
    return outcome


async def _import(kind: Kind, path: Path, stack: Stack, log: Log, *, via: str) -> str:
    """Run the invoice service's importer on `path`; a phrase saying how it was run."""
    if via == "cli":
        return await _import_cli(kind, path, stack)
    return await _import_in_process(kind, path, stack, log)


async def _import_in_process(kind: Kind, path: Path, stack: Stack, log: Log) -> str:
    """`invoice.imports.runner.import_rows` in this process, as the CLI command drives it."""
    from duewise_service.db import make_engine, make_sessionmaker
    from invoice.config import Settings
    from invoice.imports.mapping import load_mapping
    from invoice.imports.parse import read_csv
    from invoice.imports.runner import import_rows

    settings = Settings(database_url=stack.invoice_db_url)
    engine = make_engine(settings.sqlalchemy_url, pool_size=2)
    try:
        mapping = load_mapping(MAPPING)
        _, rows = read_csv(await asyncio.to_thread(path.read_bytes), mapping)
        report = await import_rows(
            session_factory=make_sessionmaker(engine), kind=kind, rows=rows, mapping=mapping
        )
    finally:
        await engine.dispose()
    if report.rejected:
        sample = [r.model_dump() for r in report.rejected_rows[:3]]
        raise RuntimeError(f"import {kind}: {report.rejected} rows rejected, e.g. {sample}")
    log(f"  {kind}: {report.created:,} created, {report.skipped:,} skipped")
    return (
        "`invoice.imports.runner.import_rows` in the bench process (reading the file with "
        "`imports.parse.read_csv`, batches of 500 issued set-wise; per-row savepoints only "
        "for a batch that fails)"
    )


async def _import_cli(kind: Kind, path: Path, stack: Stack) -> str:
    """`python -m invoice.cli import KIND FILE --mapping sage100` as a subprocess."""
    env = {
        **os.environ,
        "INVOICE_DATABASE_URL": stack.invoice_db_url,
        "KAFKA_BOOTSTRAP_SERVERS": stack.bootstrap,
        "DUEWISE_ADMIN_TOKEN": stack.admin_token,
    }
    out_path = stack.log_dir / f"import-{kind}.log"
    with out_path.open("ab") as out:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "invoice.cli", "import", kind, str(path), "--mapping", MAPPING,
            env=env, stdin=asyncio.subprocess.DEVNULL, stdout=out, stderr=out,
        )  # fmt: skip
        try:
            async with asyncio.timeout(600):
                code = await proc.wait()
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    if code != 0:
        tail = out_path.read_text(errors="replace")[-3000:]
        raise RuntimeError(f"invoice import {kind} exited {code}:\n{tail}")
    return (
        f"`python -m invoice.cli import invoices FILE --mapping {MAPPING}` (a subprocess; "
        "its interpreter start-up is inside the timing)"
    )


async def _count_invoices(dsn: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        return int(await conn.fetchval("SELECT count(*) FROM invoice"))
    finally:
        await conn.close()


def _customer_no(i: int) -> str:
    return f"B{i:06d}"


def _write_customers(path: Path, n: int) -> None:
    rng = random.Random(11)
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(CUSTOMER_COLUMNS)
        for i in range(n):
            w.writerow([
                "01", _customer_no(i), f"Bench Customer {i}, Inc.", f"{i} Main St", "Springfield",
                rng.choice(_STATES), f"{10000 + i}", "USA", "(555) 010-0100",
                f"ap{i}@bench.example", "AP", rng.choice(("01", "06", "07")), "50,000.00",
            ])  # fmt: skip


def _write_invoices(path: Path, rows: int, customers: int) -> None:
    rng = random.Random(12)
    today = dt.date.today()
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(INVOICE_COLUMNS)
        for i in range(rows):
            issue = today - dt.timedelta(days=rng.randint(0, 120))
            cents = rng.randint(1_000, 2_500_000)
            balance = cents if rng.random() < 0.8 else rng.randint(1, cents)
            w.writerow([
                "01", _customer_no(i % customers), f"{i + 1:07d}", "000000", "IN",
                issue.strftime("%m/%d/%Y"), (issue + dt.timedelta(days=30)).strftime("%m/%d/%Y"),
                _dollars(cents), _dollars(balance), f"PO-{i % 997}", "01",
            ])  # fmt: skip


def _dollars(cents: int) -> str:
    """`1,234.50`: Sage 100's export format, from integer cents (no float on the way)."""
    return f"{cents // 100:,}.{cents % 100:02d}"
