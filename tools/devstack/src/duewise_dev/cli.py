"""`duewise-dev`: the whole system on the embedded default, or just its infrastructure."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Annotated

import httpx
import typer
from rich.console import Console

from duewise_dev.seed import SeedError, Urls, plan_book, print_report
from duewise_dev.seed import seed as run_seed
from duewise_dev.services import SERVICES
from duewise_dev.supervisor import StackOptions, run_stack

app = typer.Typer(
    help="Run duewise locally: a real PostgreSQL, a Kafka-protocol broker and every service.",
    no_args_is_help=True,
    add_completion=False,
)

SERVICE_URLS = {s.name: s.base_url for s in SERVICES}

DataDir = Annotated[
    Path,
    typer.Option(help="Where PostgreSQL data (<dir>/pg) and logs (<dir>/logs) are kept."),
]


@app.command()
def run(
    data_dir: DataDir = Path(".duewise"),
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="Only write services' output to their logs.")
    ] = False,
    demo: Annotated[
        bool, typer.Option("--demo", help="Seed the demo book and UI users once the stack is up.")
    ] = False,
) -> None:
    """Start PostgreSQL, the broker and every service; Ctrl-C stops them all.

    DATABASE_URL / KAFKA_BOOTSTRAP_SERVERS use existing ones instead of the embedded
    servers; DUEWISE_PG_PORT (5442) and DUEWISE_KAFKA_PORT (9092) move the embedded ones.
    """
    options = StackOptions.from_env(data_dir)
    options.echo = not quiet
    options.demo = demo
    raise typer.Exit(asyncio.run(run_stack(options, _console())))


@app.command()
def infra(data_dir: DataDir = Path(".duewise")) -> None:
    """Start only PostgreSQL and the broker (with topics and databases) for local development."""
    options = StackOptions.from_env(data_dir)
    console = _console()

    def print_exports(server_url: str, bootstrap: str) -> None:
        console.print("\n# for your shell:")
        console.print(f"export DATABASE_URL={server_url}", highlight=False, soft_wrap=True)
        console.print(f"export KAFKA_BOOTSTRAP_SERVERS={bootstrap}", highlight=False)

    code = asyncio.run(run_stack(options, console, services=False, on_ready=print_exports))
    raise typer.Exit(code)


@app.command()
def seed(
    customers: Annotated[int, typer.Option(min=1, help="How many customers.")] = 200,
    invoices: Annotated[int, typer.Option(min=1, help="About how many invoices in all.")] = 2000,
    random_seed: Annotated[int, typer.Option("--seed", help="The book's random seed.")] = 7,
    concurrency: Annotated[int, typer.Option(min=1, max=64, help="Customers in flight.")] = 8,
    users: Annotated[bool, typer.Option(help="Create the UI users admin, carol, dave.")] = True,
    invoice_url: str = SERVICE_URLS["invoice"],
    dunning_url: str = SERVICE_URLS["dunning"],
    risk_url: str = SERVICE_URLS["risk"],
    notify_url: str = SERVICE_URLS["notify"],
) -> None:
    """Write a realistic demo book to a running stack (`make run` in another shell) over its
    HTTP APIs, and create the UI users; safe to run again. Needs DUEWISE_ADMIN_TOKEN."""
    token = os.environ.get("DUEWISE_ADMIN_TOKEN")
    if not token:
        raise typer.BadParameter(
            "set DUEWISE_ADMIN_TOKEN to the token `make run` printed (or started with)"
        )
    urls = Urls(invoice=invoice_url, dunning=dunning_url, risk=risk_url, notify=notify_url)
    book = plan_book(customers=customers, invoices=invoices, seed=random_seed)
    console = _console()
    try:
        report = asyncio.run(
            run_seed(
                urls=urls,
                admin_token=token,
                book=book,
                users=users,
                concurrency=concurrency,
                progress=lambda line: console.print(f"[dim]{line}[/]"),
            )
        )
    except (SeedError, httpx.HTTPError) as exc:
        console.print(f"[bold red]seed failed:[/] {exc}", highlight=False)
        raise typer.Exit(1) from exc
    print_report(console, report, notify_url)


@app.command()
def settings(
    markdown: Annotated[
        bool, typer.Option("--markdown", help="The table README.md carries ('Every setting').")
    ] = False,
    readme: Annotated[
        Path | None, typer.Option(help="Rewrite the table between this README's markers.")
    ] = None,
) -> None:
    """Every environment variable every service reads, with its default and meaning."""
    from duewise_dev import settings_catalogue  # imports every service: only when asked

    if readme is not None:
        changed = settings_catalogue.update_readme(readme)
        typer.echo(f"{readme}: {'updated' if changed else 'already current'}")
        return
    text = settings_catalogue.markdown() if markdown else settings_catalogue.plain_text()
    typer.echo(text, nl=False)


def _console() -> Console:
    # soft_wrap: long lines (URLs, the token, the curl example) stay whole for copy-paste.
    return Console(soft_wrap=True)


if __name__ == "__main__":  # pragma: no cover - `python -m duewise_dev.cli`
    app()
