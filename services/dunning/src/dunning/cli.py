"""The dunning service's commands: `python -m dunning.cli migrate|api|relay|consumer|scheduler`."""

from __future__ import annotations

import asyncio

import typer
from duewise_service.commands import run_consumer, run_relay
from duewise_service.telemetry import run_worker

from dunning.config import get_settings

app = typer.Typer(help="duewise dunning service", no_args_is_help=True)
SERVICE_NAME = "duewise-dunning"
CONSUMER_GROUP = "dunning"


@app.command()
def migrate() -> None:
    """Apply the database migrations (alembic upgrade head)."""
    from dunning.migrations import upgrade

    upgrade(get_settings().database_url)
    typer.echo("dunning: database migrated to head")


@app.command()
def api() -> None:
    """Serve the HTTP API on DUNNING_HOST:DUNNING_PORT (default 0.0.0.0:8002)."""
    import uvicorn

    settings = get_settings()
    uvicorn.run("dunning.main:create_app", factory=True, host=settings.host, port=settings.port)


@app.command()
def relay() -> None:
    """Publish committed outbox rows to Kafka until SIGTERM/SIGINT."""
    from dunning.models import RELAY_LOCK_KEY

    run_relay(SERVICE_NAME, get_settings(), lock_key=RELAY_LOCK_KEY)


@app.command()
def consumer() -> None:
    """Consume invoice.events and risk.events into the projections and schedules until
    SIGTERM/SIGINT."""
    from dunning.handlers import HANDLERS, TOPICS
    from dunning.main import init_clock
    from dunning.models import INBOX_TABLE

    settings = get_settings()
    init_clock(settings)
    run_consumer(SERVICE_NAME, settings, TOPICS, HANDLERS, INBOX_TABLE, group=CONSUMER_GROUP)


@app.command()
def scheduler() -> None:
    """Claim and emit due steps until SIGTERM/SIGINT (run as many replicas as you like)."""
    import datetime as dt

    from duewise_service.db import worker_sessions

    from dunning.clock import clock
    from dunning.lastlook import InvoiceApiLastLook
    from dunning.main import init_clock
    from dunning.scheduler import Scheduler

    settings = get_settings()
    init_clock(settings)
    if settings.scheduler_pause_after_claim_s and settings.production:
        raise RuntimeError("DUNNING_SCHEDULER_PAUSE_AFTER_CLAIM_S is for fault tests only")

    async def main(stop: asyncio.Event) -> None:
        last_look = InvoiceApiLastLook.from_settings(
            settings.invoice_api_url, settings.last_look_token
        )
        try:
            async with worker_sessions(settings.sqlalchemy_url) as sessions:
                worker = Scheduler(
                    sessions,
                    clock=clock,
                    last_look=last_look,
                    lease=dt.timedelta(seconds=settings.scheduler_lease_s),
                    batch=settings.scheduler_batch,
                    pause_after_claim_s=settings.scheduler_pause_after_claim_s,
                )
                await worker.run(stop, settings.scheduler_interval_s)
        finally:
            await last_look.aclose()

    run_worker(SERVICE_NAME, main)


if __name__ == "__main__":
    app()
