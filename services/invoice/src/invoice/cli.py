"""The invoice service's commands: `invoice migrate | api | relay | consumer`.

Also runnable as `python -m invoice.cli <command>`.
"""

from __future__ import annotations

import os

import typer
from duewise_service.commands import run_consumer, run_relay

from invoice.config import get_settings
from invoice.imports.commands import import_app

app = typer.Typer(help="duewise invoice service", no_args_is_help=True)
app.add_typer(import_app, name="import")
CONSUMER_GROUP = "invoice"


@app.command()
def migrate() -> None:
    """Apply the database migrations (alembic upgrade head) to the configured database."""
    from invoice.migrations import upgrade

    settings = get_settings()
    upgrade(settings.database_url)
    typer.echo("invoice: database migrated to head")


@app.command()
def api() -> None:
    """Serve the HTTP API on INVOICE_HOST:INVOICE_PORT (default 0.0.0.0:8001)."""
    import uvicorn

    settings = get_settings()
    if settings.admin_token is None:
        from duewise_service.auth import generate_token

        token = generate_token()
        os.environ["DUEWISE_ADMIN_TOKEN"] = token
        get_settings.cache_clear()
        settings = get_settings()
        typer.echo(f"invoice: DUEWISE_ADMIN_TOKEN not set; generated admin token: {token}")
    # An import string and factory, so that each worker process builds its own app.
    uvicorn.run(
        "invoice.main:create_app",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        access_log=settings.access_log,
        log_level="info",
    )


@app.command()
def relay() -> None:
    """Publish committed outbox rows to Kafka until SIGTERM/SIGINT."""
    from invoice.main import SERVICE_NAME
    from invoice.models import RELAY_LOCK_KEY

    settings = get_settings()
    typer.echo(f"invoice relay: publishing to {settings.kafka_bootstrap_servers}")
    run_relay(
        SERVICE_NAME,
        settings,
        lock_key=RELAY_LOCK_KEY,
        pause_before_mark_s=settings.relay_pause_before_mark_s,
    )


@app.command()
def consumer() -> None:
    """Consume dunning.events (fees become fee invoices) and notify.events (bounces mark
    contacts undeliverable) until SIGTERM/SIGINT."""
    from invoice.handlers import HANDLERS, TOPICS
    from invoice.main import SERVICE_NAME
    from invoice.models import INBOX_TABLE

    settings = get_settings()
    typer.echo(
        f"invoice consumer: reading {', '.join(TOPICS)} from {settings.kafka_bootstrap_servers}"
    )
    run_consumer(SERVICE_NAME, settings, TOPICS, HANDLERS, INBOX_TABLE, group=CONSUMER_GROUP)


if __name__ == "__main__":
    app()
