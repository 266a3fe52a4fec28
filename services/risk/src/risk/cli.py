"""The risk service's commands: `python -m risk.cli migrate|api|relay|consumer|rebuild`."""

from __future__ import annotations

import asyncio
import os

import typer
from duewise_service.commands import run_relay
from duewise_service.telemetry import run_worker

from risk.config import get_settings

app = typer.Typer(help="duewise risk service", no_args_is_help=True)
SERVICE_NAME = "duewise-risk"
CONSUMER_GROUP = "risk"


@app.command()
def migrate() -> None:
    """Apply the database migrations (alembic upgrade head)."""
    from risk.migrations import upgrade

    upgrade(get_settings().database_url)
    typer.echo("risk: database migrated to head")


@app.command()
def api() -> None:
    """Serve the HTTP API on RISK_HOST:RISK_PORT (default 0.0.0.0:8003)."""
    import uvicorn

    settings = get_settings()
    uvicorn.run("risk.main:create_app", factory=True, host=settings.host, port=settings.port)


@app.command()
def relay() -> None:
    """Publish committed outbox rows (signals, score changes) to Kafka until SIGTERM/SIGINT."""
    from risk.models import RELAY_LOCK_KEY

    run_relay(SERVICE_NAME, get_settings(), lock_key=RELAY_LOCK_KEY)


@app.command()
def consumer() -> None:
    """Consume invoice, dunning and notify events into the profiles until SIGTERM/SIGINT."""
    from duewise_events.catalogue import DUNNING_EVENTS, INVOICE_EVENTS, NOTIFY_EVENTS
    from duewise_service.db import worker_sessions

    from risk.consumer import RiskConsumer

    settings = get_settings()
    # One pooled connection per partition worked at once: with fewer, the pool's overflow
    # connections were opened and closed again for most transactions (a connection and a
    # PostgreSQL backend per transaction under a steady trickle of events).
    at_once = 4

    async def main(stop: asyncio.Event) -> None:
        async with worker_sessions(settings.sqlalchemy_url, pool_size=at_once) as sessions:
            await RiskConsumer(
                name=CONSUMER_GROUP,
                topics=[INVOICE_EVENTS, DUNNING_EVENTS, NOTIFY_EVENTS],
                session_factory=sessions,
                bootstrap_servers=settings.kafka_bootstrap_servers,
                thresholds=settings.thresholds,
                enable_idempotence=settings.kafka_enable_idempotence,
                partition_concurrency=at_once,
            ).run(stop)

    run_worker(SERVICE_NAME, main)


@app.command()
def rebuild(
    commit_offsets: bool = typer.Option(
        True, help="point the consumer group at where the rebuild stopped reading"
    ),
    workers: int = typer.Option(
        0, help="worker processes folding customers in parallel (0: one per core)"
    ),
) -> None:
    """Rebuild every profile from the topics from the beginning (stop the consumer first).

    Emits no events: signals and score changes were announced when they happened.
    """
    from risk.service.rebuild import rebuild as run_rebuild

    settings = get_settings()
    result = asyncio.run(
        run_rebuild(
            settings.plain_database_url,
            settings.kafka_bootstrap_servers,
            settings.thresholds,
            group=CONSUMER_GROUP if commit_offsets else None,
            workers=workers or len(os.sched_getaffinity(0)),
        )
    )
    typer.echo(
        f"risk: rebuilt {result.customers} customers from {result.records} records "
        f"({result.applied} applied, {result.skipped} skipped) in "
        f"{result.read_s:.1f}s read+fold, {result.write_s:.1f}s write"
    )


if __name__ == "__main__":
    app()
