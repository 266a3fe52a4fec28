"""`duewise-dev`: the whole system on the embedded default, or just its infrastructure."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from duewise_dev.supervisor import StackOptions, run_stack

app = typer.Typer(
    help="Run duewise locally: a real PostgreSQL, a Kafka-protocol broker and every service.",
    no_args_is_help=True,
    add_completion=False,
)

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
) -> None:
    """Start PostgreSQL, the broker and every service; Ctrl-C stops them all.

    DATABASE_URL / KAFKA_BOOTSTRAP_SERVERS use existing ones instead of the embedded
    servers; DUEWISE_PG_PORT (5442) and DUEWISE_KAFKA_PORT (9092) move the embedded ones.
    """
    options = StackOptions.from_env(data_dir)
    options.echo = not quiet
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


def _console() -> Console:
    # soft_wrap: long lines (URLs, the token, the curl example) stay whole for copy-paste.
    return Console(soft_wrap=True)


if __name__ == "__main__":  # pragma: no cover - `python -m duewise_dev.cli`
    app()
