"""`invoice import KIND FILE --mapping sage100|PATH [--report rejected.csv]`.

`import_app` is a typer app with one command per KIND (customers, invoices, payments), so
that `app.add_typer(import_app, name="import")` in `invoice.cli` makes `invoice import …`.
It writes to Settings.database_url with a progress bar, prints a summary table and, with
`--report`, writes the rejected rows (row, column, reason, then the row's own columns) as CSV.
Exit status: 0 when the file was read (even with rejected rows; see the summary / report),
2 for an unusable mapping or file.
"""

from __future__ import annotations

import asyncio
import csv
from pathlib import Path
from typing import Annotated

import typer
from duewise_service.db import make_engine, make_sessionmaker
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from invoice.config import get_settings
from invoice.imports.mapping import Kind, Mapping, MappingError, load_mapping
from invoice.imports.parse import FileError, RowParser, read_csv
from invoice.imports.runner import BATCH_SIZE, ImportReport, import_rows

import_app = typer.Typer(
    help="Bulk-import an ERP's CSV export (customers, open invoices or payments).",
    no_args_is_help=True,
)

SHOWN_REJECTS = 20


FileArg = Annotated[
    Path, typer.Argument(exists=True, dir_okay=False, readable=True, help="the CSV file")
]
MappingOpt = Annotated[
    str,
    typer.Option(
        "--mapping", "-m", help="'sage100', or a YAML/TOML mapping file (see generic-example)"
    ),
]
ReportOpt = Annotated[
    Path | None, typer.Option("--report", help="write the rejected rows to this CSV file")
]
BatchOpt = Annotated[
    int, typer.Option("--batch-size", min=1, max=10_000, help="rows per transaction")
]


@import_app.command("customers")
def import_customers(
    file: FileArg,
    mapping: MappingOpt = "sage100",
    report: ReportOpt = None,
    batch_size: BatchOpt = BATCH_SIZE,
) -> None:
    """Import customers (Sage 100: AR_Customer), matched by external id."""
    import_file("customers", file, mapping, report, batch_size)


@import_app.command("invoices")
def import_invoices(
    file: FileArg,
    mapping: MappingOpt = "sage100",
    report: ReportOpt = None,
    batch_size: BatchOpt = BATCH_SIZE,
) -> None:
    """Import open invoices (Sage 100: AR_OpenInvoice); import their customers first."""
    import_file("invoices", file, mapping, report, batch_size)


@import_app.command("payments")
def import_payments(
    file: FileArg,
    mapping: MappingOpt = "sage100",
    report: ReportOpt = None,
    batch_size: BatchOpt = BATCH_SIZE,
) -> None:
    """Import payments (Sage 100: cash receipts history), allocated to the invoice named."""
    import_file("payments", file, mapping, report, batch_size)


def import_file(kind: Kind, file: Path, mapping: str, report: Path | None, batch: int) -> None:
    """Import FILE as KIND, idempotent by external id: a re-run creates nothing new."""
    console = Console()
    try:
        chosen = load_mapping(mapping)
        chosen.for_kind(kind)
        header, reader = read_csv(file.read_bytes(), chosen)
        RowParser(chosen, kind).check_header(header)
        rows = list(reader)
    except (MappingError, FileError, ValueError) as exc:
        console.print(f"[red]invoice import {kind}:[/red] {exc}")
        raise typer.Exit(2) from exc
    result = asyncio.run(_run(chosen, kind, rows, batch, console))
    console.print(_summary(result, file))
    if result.rejected_rows:
        console.print(_rejects(result))
    if report is not None:
        write_report(result, report)
        console.print(f"rejected rows written to {report}")


async def _run(
    chosen: Mapping, kind: Kind, rows: list[dict[str, str]], batch: int, console: Console
) -> ImportReport:
    settings = get_settings()
    engine = make_engine(settings.sqlalchemy_url, pool_size=2)
    try:
        with Progress(
            TextColumn(f"importing {kind}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=False,
        ) as bar:
            task = bar.add_task("import", total=len(rows))
            return await import_rows(
                session_factory=make_sessionmaker(engine),
                kind=kind,
                rows=rows,
                mapping=chosen,
                progress=lambda n: bar.advance(task, n),
                batch_size=batch,
            )
    finally:
        await engine.dispose()


def _summary(result: ImportReport, file: Path) -> Table:
    table = Table(title=f"{result.kind} from {file.name} ({result.mapping})", min_width=50)
    table.add_column("outcome")
    table.add_column("rows", justify="right")
    for name in ("created", "updated", "skipped", "rejected"):
        table.add_row(name, str(getattr(result, name)))
    table.add_row("total", str(result.rows), style="bold")
    return table


def _rejects(result: ImportReport) -> Table:
    shown = result.rejected_rows[:SHOWN_REJECTS]
    more = len(result.rejected_rows) - len(shown)
    table = Table(title="rejected rows" + (f" (first {len(shown)}; {more} more)" if more else ""))
    table.add_column("row", justify="right")
    table.add_column("column")
    table.add_column("reason")
    for r in shown:
        table.add_row(str(r.row), r.column or "", r.reason)
    return table


def write_report(result: ImportReport, path: Path) -> None:
    """The rejected rows as CSV: row, column, reason, then the row's own columns."""
    columns: list[str] = []
    for r in result.rejected_rows:
        columns.extend(c for c in r.values if c not in columns)
    with path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(["row", "column", "reason", *columns])
        for r in result.rejected_rows:
            writer.writerow(
                [r.row, r.column or "", r.reason, *(r.values.get(c, "") for c in columns)]
            )
