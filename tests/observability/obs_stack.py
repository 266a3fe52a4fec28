"""One in-process duewise for the observability tests: the invoice API (ASGI), both relays,
the dunning consumer and scheduler, the notify consumer and sender, a real SMTP server, on
the real PostgreSQL and broker. In one process, so that one in-memory span exporter and one
Prometheus registry see every service."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx
from aiokafka import AIOKafkaConsumer, TopicPartition
from duewise_dev.broker import ensure_topics
from duewise_dev.catcher import Catcher
from duewise_events import topic_reader
from duewise_events.catalogue import DUNNING_EVENTS, INVOICE_EVENTS, dead_letter_topic
from duewise_events.consumer import EventConsumer
from duewise_events.relay import OutboxRelay
from duewise_service.db import worker_sessions
from duewise_service.urls import plain_url, sqlalchemy_url
from fastapi import FastAPI
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

T = TypeVar("T")
INVOICE_TOKEN = "obs-invoice-admin-" + secrets.token_hex(16)
NOTIFY_TOPICS = (INVOICE_EVENTS, DUNNING_EVENTS)


def span_exporter() -> InMemorySpanExporter:
    """An in-memory exporter on the process's SDK provider (installed by the services' own
    setup when no test did it first). Root spans follow the services' sampler (off unless
    exporting), so a test sends a sampled `traceparent` to have its flow recorded."""
    from duewise_service.tracing import RedactingSpanProcessor, install_tracer_provider

    install_tracer_provider("duewise-observability-test")
    provider = trace.get_tracer_provider()
    assert isinstance(provider, TracerProvider)
    # A provider another test installed first (libs/events' own) lacks the services'
    # redaction step: put it in front of this exporter, as make_tracer_provider does.
    active = provider._active_span_processor._span_processors
    if not any(isinstance(p, RedactingSpanProcessor) for p in active):
        provider.add_span_processor(RedactingSpanProcessor())
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return exporter


async def eventually(
    probe: Callable[[], Awaitable[T]], ok: Callable[[T], bool], *, within: float = 60.0
) -> T:
    deadline = time.monotonic() + within
    while True:
        value = await probe()
        if ok(value):
            return value
        assert time.monotonic() < deadline, f"not reached in {within}s; last: {value!r}"
        await asyncio.sleep(0.1)


async def start_groups_at_end(bootstrap: str, group: str, topics: tuple[str, ...]) -> int:
    """Commit `group` at the topics' ends (it sees only what comes next); the records total."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False
    )
    await consumer.start()
    total = 0
    try:
        offsets: dict[TopicPartition, int] = {}
        for topic in topics:
            ends = await topic_reader.end_offsets(bootstrap, topic)
            offsets.update({TopicPartition(topic, p): off for p, off in ends.items()})
            total += sum(ends.values())
        consumer.assign(list(offsets))
        await consumer.commit(offsets)
    finally:
        await consumer.stop()
    return total


async def records_on(bootstrap: str, topics: tuple[str, ...]) -> int:
    total = 0
    for topic in topics:
        total += sum((await topic_reader.end_offsets(bootstrap, topic)).values())
    return total


@dataclass
class Stack:
    invoice_app: FastAPI
    invoice: httpx.AsyncClient
    catcher: Catcher
    bootstrap: str
    dunning_group: str
    notify_group: str
    notify_start: int
    dunning_maker: Any
    notify_maker: Any
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def check(self) -> None:
        for task in self.tasks:
            if task.done():
                raise AssertionError(f"a component stopped: {task.exception()!r}")


@contextlib.asynccontextmanager
async def running_stack(
    dbs: dict[str, str], bootstrap: str, *, scheduler_clock: Any
) -> AsyncIterator[Stack]:
    from dunning.handlers import HANDLERS as DUNNING_HANDLERS
    from dunning.handlers import TOPICS as DUNNING_TOPICS
    from dunning.lastlook import InvoiceApiLastLook as DunningLastLook
    from dunning.models import INBOX_TABLE as DUNNING_INBOX
    from dunning.models import RELAY_LOCK_KEY as DUNNING_LOCK
    from dunning.scheduler import Scheduler
    from invoice.config import Settings as InvoiceSettings
    from invoice.main import create_app as create_invoice_app
    from invoice.models import RELAY_LOCK_KEY as INVOICE_LOCK
    from notify.cli import build_sender_parts
    from notify.config import Settings as NotifySettings
    from notify.handlers import HANDLERS as NOTIFY_HANDLERS
    from notify.lastlook import InvoiceApiLastLook as NotifyLastLook
    from notify.models import INBOX_TABLE as NOTIFY_INBOX
    from notify.sender import Sender

    topics = {t: 3 for t in (*NOTIFY_TOPICS, *DUNNING_TOPICS)}
    await ensure_topics(bootstrap, topics | {dead_letter_topic(t): 3 for t in topics})
    tag = secrets.token_hex(4)
    dunning_group, notify_group = f"dunning-obs-{tag}", f"notify-obs-{tag}"
    await start_groups_at_end(bootstrap, dunning_group, tuple(DUNNING_TOPICS))
    notify_start = await start_groups_at_end(bootstrap, notify_group, NOTIFY_TOPICS)

    catcher = Catcher(smtp_port=0, http_port=0)
    await catcher.start()
    invoice_app = create_invoice_app(
        InvoiceSettings(
            database_url=dbs["invoice"],
            kafka_bootstrap_servers=bootstrap,
            admin_token=INVOICE_TOKEN,
        )
    )
    notify_settings = NotifySettings(
        database_url=dbs["notify"],
        kafka_bootstrap_servers=bootstrap,
        smtp_url=catcher.smtp_url,
        sms_url=catcher.http_url,
        public_url="http://notify.test",
        collections_email="collections@example.com",
    )
    stop = asyncio.Event()

    def invoice_client() -> httpx.AsyncClient:
        return httpx.AsyncClient(
            transport=httpx.ASGITransport(app=invoice_app),
            base_url="http://invoice.test",
            headers={"Authorization": f"Bearer {INVOICE_TOKEN}"},
        )

    async with (
        invoice_app.router.lifespan_context(invoice_app),
        invoice_client() as client,
        invoice_client() as dunning_look,
        invoice_client() as notify_look,
        worker_sessions(sqlalchemy_url(dbs["dunning"]), pool_size=4) as dunning_maker,
        worker_sessions(sqlalchemy_url(dbs["notify"]), pool_size=8) as notify_maker,
    ):
        email, sms, webhooks, renderer, unused_look = build_sender_parts(notify_settings)
        await unused_look.aclose()
        components: list[Callable[[asyncio.Event], Awaitable[None]]] = [
            OutboxRelay(
                plain_url(dbs["invoice"]), bootstrap, lock_key=INVOICE_LOCK, poll_interval_s=0.2
            ).run,
            OutboxRelay(
                plain_url(dbs["dunning"]), bootstrap, lock_key=DUNNING_LOCK, poll_interval_s=0.2
            ).run,
            EventConsumer(
                name=dunning_group,
                topics=DUNNING_TOPICS,
                handlers=DUNNING_HANDLERS,
                session_factory=dunning_maker,
                inbox=DUNNING_INBOX,
                bootstrap_servers=bootstrap,
                session_timeout_ms=6000,
                heartbeat_interval_ms=500,
            ).run,
            EventConsumer(
                name=notify_group,
                topics=NOTIFY_TOPICS,
                handlers=NOTIFY_HANDLERS,
                session_factory=notify_maker,
                inbox=NOTIFY_INBOX,
                bootstrap_servers=bootstrap,
                session_timeout_ms=6000,
                heartbeat_interval_ms=500,
            ).run,
            Sender(
                notify_maker,
                settings=notify_settings,
                email=email,
                sms=sms,
                webhooks=webhooks,
                renderer=renderer,
                last_look=NotifyLastLook(notify_look),
            ).run,
        ]
        scheduler = Scheduler(
            dunning_maker,
            clock=scheduler_clock,
            last_look=DunningLastLook(dunning_look),
            lease=dt.timedelta(seconds=30),
        )
        stack = Stack(
            invoice_app=invoice_app,
            invoice=client,
            catcher=catcher,
            bootstrap=bootstrap,
            dunning_group=dunning_group,
            notify_group=notify_group,
            notify_start=notify_start,
            dunning_maker=dunning_maker,
            notify_maker=notify_maker,
        )
        stack.tasks = [asyncio.create_task(run(stop)) for run in components]
        stack.tasks.append(asyncio.create_task(scheduler.run(stop, 0.2)))
        try:
            yield stack
        finally:
            stop.set()
            await asyncio.wait_for(asyncio.gather(*stack.tasks, return_exceptions=True), 30)
            await email.aclose()
            await catcher.stop()
