"""The two worker processes every service starts the same way: its outbox relay and its event
consumer, each run with logs, traces and metrics (and /metrics, /livez, /readyz on
METRICS_PORT) until SIGTERM/SIGINT.

The typer commands that call these stay in each service's cli.py: their help texts are the
service's, and typer and uvicorn are dependencies of the services, not of this library.
duewise_events is imported when a process starts, as worker_http imports its heartbeat: every
service installs it beside this library.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from duewise_service.db import worker_sessions
from duewise_service.settings import CommonSettings
from duewise_service.telemetry import run_worker

if TYPE_CHECKING:
    from duewise_events.catalogue import Event
    from duewise_events.consumer import Handler
    from sqlalchemy import Table


def run_relay(
    service_name: str, settings: CommonSettings, *, lock_key: int, pause_before_mark_s: float = 0.0
) -> None:
    """Publish the service's committed outbox rows to Kafka until signalled."""
    from duewise_events.relay import OutboxRelay

    outbox_relay = OutboxRelay(
        settings.plain_database_url,
        settings.kafka_bootstrap_servers,
        lock_key=lock_key,
        enable_idempotence=settings.kafka_enable_idempotence,
        pause_before_mark_s=pause_before_mark_s,
    )
    run_worker(service_name, outbox_relay.run)


def run_consumer(
    service_name: str,
    settings: CommonSettings,
    topics: Sequence[str],
    handlers: Mapping[type[Event], Handler],
    inbox: Table,
    *,
    group: str,
) -> None:
    """Consume `topics` as consumer group `group` into `handlers`, recording each event in
    `inbox` in the handler's transaction, until signalled."""
    from duewise_events.consumer import EventConsumer

    async def main(stop: asyncio.Event) -> None:
        async with worker_sessions(settings.sqlalchemy_url) as sessions:
            await EventConsumer(
                name=group,
                topics=list(topics),
                handlers=handlers,
                session_factory=sessions,
                inbox=inbox,
                bootstrap_servers=settings.kafka_bootstrap_servers,
                enable_idempotence=settings.kafka_enable_idempotence,
            ).run(stop)

    run_worker(service_name, main)
