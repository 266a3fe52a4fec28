"""Producer side, part two: the relay that publishes committed outbox rows to Kafka.

- One relay per service database is active at a time (a PostgreSQL advisory lock), so rows
  leave in id order and per-customer order holds; a second replica waits as a hot standby.
- It is woken by LISTEN/NOTIFY at commit, and polls as a fallback (a lost notification, a
  notification sent while the relay was reconnecting).
- It never relies on a "last published id" watermark: every pass selects *all* rows still
  unpublished. A row whose transaction took id 5 but committed after id 6 was published is
  therefore picked up on the next pass instead of being skipped for ever.
- A row is marked published only after the broker acknowledged it (acks=all). A crash
  between the two publishes it again on restart: duplicates on the wire, which consumers
  absorb with their inbox. Nothing committed is ever lost; while the broker is down rows
  simply wait.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
from collections.abc import Sequence
from typing import Any

import asyncpg
import structlog
from aiokafka import AIOKafkaProducer
from opentelemetry.trace import SpanKind

from duewise_events import heartbeat
from duewise_events.envelope import Envelope
from duewise_events.kafka import make_producer
from duewise_events.metrics import OUTBOX_BACKLOG, OUTBOX_OLDEST_AGE, OUTBOX_PUBLISHED
from duewise_events.tracing import context_from, current_trace_headers, tracer

log = structlog.get_logger("duewise.relay")

#: How often the relay measures its backlog (a count over the partial index) for metrics.
BACKLOG_EVERY_S = 5.0


class OutboxRelay:
    """Publishes one service's outbox to Kafka until `stop` is set."""

    def __init__(
        self,
        dsn: str,
        bootstrap_servers: str,
        *,
        table: str = "outbox",
        channel: str = "duewise_outbox",
        lock_key: int,
        enable_idempotence: bool = False,
        batch_size: int = 500,
        poll_interval_s: float = 1.0,
        retention: dt.timedelta = dt.timedelta(days=7),
        pause_before_mark_s: float = 0.0,
    ) -> None:
        self.dsn = dsn
        self.bootstrap_servers = bootstrap_servers
        self.table = table
        self.channel = channel
        self.lock_key = lock_key
        self.enable_idempotence = enable_idempotence
        self.batch_size = batch_size
        self.poll_interval_s = poll_interval_s
        self.retention = retention
        # Fault tests set this to hold the relay between "broker acknowledged" and "row
        # marked", so that it can be killed exactly there. Never set in production.
        self.pause_before_mark_s = pause_before_mark_s
        self.published = 0
        self._wake = asyncio.Event()
        self._backlog_at = 0.0

    async def run(self, stop: asyncio.Event) -> None:
        """Relay until `stop`; reconnects to PostgreSQL and Kafka with backoff on failure."""
        backoff = 0.2
        while not stop.is_set():
            try:
                await self._run_connected(stop)
                backoff = 0.2
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                log.warning("relay.database_unavailable", error=str(exc), retry_in=backoff)
                heartbeat.set_ready(False, "the database is unavailable")
            except Exception as exc:
                log.exception("relay.failed", error=str(exc), retry_in=backoff)
                heartbeat.set_ready(False, f"the relay failed: {type(exc).__name__}")
            if not stop.is_set():
                await _sleep_or_stop(stop, backoff)
                backoff = min(backoff * 2, 5.0)

    async def _run_connected(self, stop: asyncio.Event) -> None:
        conn: asyncpg.Connection = await asyncpg.connect(self.dsn)
        try:
            await self._become_leader(conn, stop)
            if stop.is_set():
                return
            await conn.add_listener(self.channel, self._on_notify)
            producer = make_producer(
                self.bootstrap_servers, enable_idempotence=self.enable_idempotence
            )
            await self._start_producer(producer, stop)
            try:
                log.info("relay.started", table=self.table)
                await self._loop(conn, producer, stop)
            finally:
                await producer.stop()
        finally:
            await conn.close()

    async def _become_leader(self, conn: asyncpg.Connection, stop: asyncio.Event) -> None:
        # A session-level advisory lock: held as long as this connection lives, released by
        # PostgreSQL if the process dies, so a standby takes over within one poll.
        while not stop.is_set():
            if await conn.fetchval("SELECT pg_try_advisory_lock($1)", self.lock_key):
                return
            # A hot standby is healthy and ready: it is doing its job, which is to wait.
            heartbeat.set_ready(True, "standby")
            await _sleep_or_stop(stop, self.poll_interval_s)

    async def _start_producer(self, producer: AIOKafkaProducer, stop: asyncio.Event) -> None:
        backoff = 0.2
        while not stop.is_set():
            try:
                await producer.start()
                heartbeat.set_ready(True)
                return
            except Exception as exc:  # broker down: rows wait in the outbox
                log.warning("relay.broker_unavailable", error=str(exc), retry_in=backoff)
                heartbeat.set_ready(False, "the broker is unavailable")
                await producer.stop()
                await _sleep_or_stop(stop, backoff)
                backoff = min(backoff * 2, 5.0)

    def _on_notify(self, *_: object) -> None:
        self._wake.set()

    async def _loop(
        self, conn: asyncpg.Connection, producer: AIOKafkaProducer, stop: asyncio.Event
    ) -> None:
        last_purge = dt.datetime.min.replace(tzinfo=dt.UTC)
        while not stop.is_set():
            heartbeat.beat()
            self._wake.clear()
            await self._measure_backlog(conn)
            rows = await conn.fetch(
                f"SELECT id, event_id, topic, key, type, source, subject, time, payload,"
                f" traceparent, tracestate FROM {self.table}"
                f" WHERE published_at IS NULL ORDER BY id LIMIT $1",
                self.batch_size,
            )
            if rows:
                sent = await self._publish(producer, rows)
                if self.pause_before_mark_s:
                    await asyncio.sleep(self.pause_before_mark_s)
                if sent:
                    await conn.execute(
                        f"UPDATE {self.table} SET published_at = now() WHERE id = ANY($1)", sent
                    )
                    self.published += len(sent)
                if len(sent) == len(rows):
                    continue  # there may be more: do not wait
                await _sleep_or_stop(stop, 1.0)  # a send failed: let the broker recover
                continue
            now = dt.datetime.now(dt.UTC)
            if now - last_purge > dt.timedelta(minutes=10):
                await conn.execute(
                    f"DELETE FROM {self.table} WHERE published_at < $1", now - self.retention
                )
                last_purge = now
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wait(stop), self.poll_interval_s)

    async def _measure_backlog(self, conn: asyncpg.Connection) -> None:
        """Backlog and oldest-row age for the metrics, at most every BACKLOG_EVERY_S."""
        now = asyncio.get_running_loop().time()
        if now - self._backlog_at < BACKLOG_EVERY_S:
            return
        self._backlog_at = now
        row = await conn.fetchrow(
            f"SELECT count(*) AS n,"
            f" coalesce(extract(epoch FROM now() - min(created_at)), 0) AS age"
            f" FROM {self.table} WHERE published_at IS NULL"
        )
        if row is None:  # an aggregate always returns one row; for the type checker
            return
        attributes = {"table": self.table}
        OUTBOX_BACKLOG.set(int(row["n"]), attributes)
        OUTBOX_OLDEST_AGE.set(float(row["age"]), attributes)

    async def _wait(self, stop: asyncio.Event) -> None:
        waiters = [asyncio.create_task(self._wake.wait()), asyncio.create_task(stop.wait())]
        try:
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waiters:
                w.cancel()

    async def _publish(
        self, producer: AIOKafkaProducer, rows: Sequence[asyncpg.Record]
    ) -> list[int]:
        """Send rows in id order; return the ids of the leading run the broker acknowledged.

        Sends are queued together (the producer batches them per partition, in order) and
        then awaited in order. Only the contiguous acknowledged prefix is marked: a row after
        a failure is re-sent on the next pass, after the one that failed, so a customer's
        events keep their order (at the price of a duplicate that the inbox absorbs).
        """
        futures: list[tuple[int, asyncio.Future[Any]]] = []
        for row in rows:
            envelope = _envelope(row)
            parent = context_from(row["traceparent"], row["tracestate"])
            with tracer.start_as_current_span(
                f"{row['topic']} publish",
                context=parent,
                kind=SpanKind.PRODUCER,
                attributes={
                    "messaging.system": "kafka",
                    "messaging.destination.name": row["topic"],
                    "messaging.message.id": row["event_id"],
                    "cloudevents.event_type": row["type"],
                },
            ):
                headers = [
                    h for h in envelope.headers() if h[0] not in ("traceparent", "tracestate")
                ]
                headers.extend((k, v.encode()) for k, v in current_trace_headers().items())
                try:
                    fut = await producer.send(
                        row["topic"],
                        value=envelope.body(),
                        key=row["key"].encode(),
                        headers=headers,
                    )
                except Exception as exc:
                    log.warning("relay.send_failed", error=str(exc), outbox_id=row["id"])
                    break
            futures.append((row["id"], fut))
        acked: list[int] = []
        for outbox_id, fut in futures:
            try:
                await fut
            except Exception as exc:
                log.warning("relay.send_failed", error=str(exc), outbox_id=outbox_id)
                break
            acked.append(outbox_id)
        for row in rows[: len(acked)]:
            OUTBOX_PUBLISHED.add(1, {"topic": row["topic"]})
        # Let the rest settle so no future is left un-awaited; their rows stay unpublished.
        for _, fut in futures[len(acked) :]:
            with contextlib.suppress(Exception):
                await fut
        return acked


def _envelope(row: asyncpg.Record) -> Envelope:
    payload = row["payload"]
    data = json.loads(payload) if isinstance(payload, str) else payload
    return Envelope(
        id=row["event_id"],
        source=row["source"],
        type=row["type"],
        time=row["time"],
        key=row["key"],
        data=data,
        subject=row["subject"],
    )


async def _sleep_or_stop(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
