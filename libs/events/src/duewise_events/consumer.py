"""Consumer side: at least once on the wire, exactly once in effect.

For each record: one database transaction holds {inbox row (consumer, event id) + the
handler's effect}; only after it commits is the offset committed. Consecutive records of a
partition share one such transaction (up to `batch_size`, each with its own inbox row); a
batch in which one record fails is rolled back, the records before it are applied again
together and the failing one alone, with its retries. A redelivered event finds
its inbox row and has no second effect. A record that keeps failing goes to `<topic>.dlt`
with the error in its headers, and the partition keeps moving. An outage of the database
(or any other infrastructure) is not the record's fault: it is retried until it passes,
and nothing is dead-lettered for it.

A service whose handlers can apply many events in one go for less than one at a time (one
lock, one read and one write per customer instead of one per event) passes `run_handler`:
see `RunHandler`. The handlers map stays the table of contents and serves single records.
Under a trickle of events, where each poll brings a record or two, `poll_linger_ms` and
`runs_across_partitions` make those runs longer: fewer transactions for a little latency.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import heapq
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import NamedTuple

import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError, KafkaError
from aiokafka.structs import ConsumerRecord
from opentelemetry.trace import Span, SpanKind
from sqlalchemy import Table, TextClause, text
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from duewise_events import heartbeat
from duewise_events.catalogue import BY_TYPE, Event, dead_letter_topic
from duewise_events.envelope import Envelope, EnvelopeError
from duewise_events.kafka import make_producer
from duewise_events.metrics import CONSUMER_LAG, DLT_RECORDS, EVENTS_FAILED, EVENTS_PROCESSED
from duewise_events.tracing import context_from, links_to, tracer

log = structlog.get_logger("duewise.consumer")

Handler = Callable[[AsyncSession, Event, Envelope], Awaitable[None]]


class Delivery(NamedTuple):
    """A new event handed to a `RunHandler`: the typed event and the envelope it came in."""

    event: Event
    envelope: Envelope


#: Applies consecutive new events of one partition (with `runs_across_partitions`, of a
#: poll's partitions, each one's in order), in order, in the consumer's transaction
#: (their inbox rows are already written in it; duplicates and ignored types are left out).
#: It must have the effect of the handlers map's functions called one by one in that order:
#: those still apply a record that comes alone, and one retried alone after its run failed.
#: It must not commit. If it raises, the run is rolled back and split (a run across
#: partitions into its partitions, a partition's run in halves), each part applied again,
#: until the failing record is alone; that one is retried, then dead-lettered.
RunHandler = Callable[[AsyncSession, Sequence[Delivery]], Awaitable[None]]

#: A record of a run, read: the record, its envelope and its event (None: a type this
#: consumer does not handle).
_Work = tuple[ConsumerRecord[bytes, bytes], Envelope, Event | None]

#: What one poll brought: each partition's records, in order.
_Poll = dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]

#: Records asked of one poll (aiokafka's getmany), over all assigned partitions.
_POLL_RECORDS = 500


class _RunFailed(Exception):
    """A run's transaction failed (rolled back): `error`, and `at`, the index of the record
    whose handler raised, when one can be named."""

    def __init__(self, error: Exception, at: int | None) -> None:
        super().__init__(str(error))
        self.error, self.at = error, at


@dataclass(frozen=True)
class Outcome:
    """What happened to one record: for metrics, logs and tests."""

    status: str  # "applied" | "duplicate" | "ignored" | "dead_lettered"
    event_id: str | None
    error: str | None = None
    type: str | None = None  # the CloudEvents type, when the envelope could be read


# SQLSTATE classes of a server that is not there right now: 08 connection exception;
# 57P01-57P03 admin shutdown, crash shutdown, "the database system is starting up".
_OUTAGE_STATES = ("08", "57P")


def _is_transient(exc: BaseException) -> bool:
    """Infrastructure trouble, not the record's fault: retry without limit."""
    if isinstance(exc, OperationalError | InterfaceError | OSError | TimeoutError):
        return True
    if isinstance(exc, DBAPIError):
        if exc.connection_invalidated:
            return True
        exc = exc.orig if exc.orig is not None else exc
    # While PostgreSQL restarts, the pool raises the driver's own CannotConnectNowError
    # (57P03), unwrapped: counted as the record's fault, it dead-lettered good records.
    causes = (exc, exc.__cause__)
    return any(str(getattr(c, "sqlstate", "") or "").startswith(_OUTAGE_STATES) for c in causes)


def _inbox_insert(inbox: Table) -> TextClause:
    """INSERT … ON CONFLICT DO NOTHING RETURNING event_id of the inbox rows of a run (one
    record or many), from arrays: one round trip for the run instead of one per record. A
    record that comes twice in the run conflicts with its first copy and is returned once.

    A text statement, so compiled once and then served from the engine's statement cache
    (SQLAlchemy does not cache the PostgreSQL dialect's `insert()`: `inherit_cache` is False).
    """
    table = ".".join(
        '"' + part.replace('"', '""') + '"' for part in (inbox.schema, inbox.name) if part
    )
    return text(
        f'INSERT INTO {table} ("consumer", "event_id", "type", "topic", "partition", "offset") '
        'SELECT :consumer, r.event_id, r.type, r.topic, r.partition, r."offset" FROM unnest('
        "CAST(:event_ids AS text[]), CAST(:types AS text[]), CAST(:topics AS text[]), "
        "CAST(:partitions AS bigint[]), CAST(:offsets AS bigint[])"
        ') AS r(event_id, type, topic, partition, "offset") '
        'ON CONFLICT DO NOTHING RETURNING "event_id"'
    )


class EventConsumer:
    """Runs `handlers` (a literal map of event class to function) over `topics`."""

    def __init__(
        self,
        *,
        name: str,
        topics: Sequence[str],
        handlers: Mapping[type[Event], Handler],
        session_factory: async_sessionmaker[AsyncSession],
        inbox: Table,
        bootstrap_servers: str,
        max_attempts: int = 3,
        retry_backoff_s: float = 0.2,
        enable_idempotence: bool = False,
        on_outcome: Callable[[Outcome], None] | None = None,
        session_timeout_ms: int = 10_000,
        heartbeat_interval_ms: int = 3_000,
        partition_concurrency: int = 4,
        batch_size: int = 50,
        run_handler: RunHandler | None = None,
        poll_linger_ms: int = 0,
        runs_across_partitions: bool = False,
    ) -> None:
        self.name = name
        self.topics = list(topics)
        self.handlers = {cls.TYPE: fn for cls, fn in handlers.items()}
        # Runs of more than one new event go to it instead of the handlers (see RunHandler).
        self.run_handler = run_handler
        self.session_factory = session_factory
        self.inbox = inbox
        self._inbox_insert = _inbox_insert(inbox)
        self.bootstrap_servers = bootstrap_servers
        self.max_attempts = max_attempts
        self.retry_backoff_s = retry_backoff_s
        self.enable_idempotence = enable_idempotence
        self.on_outcome = on_outcome
        # How long a dead member keeps its partitions. Kafka's default; tests shorten it
        # because the embedded broker also waits this long when a member leaves cleanly.
        self.session_timeout_ms = session_timeout_ms
        self.heartbeat_interval_ms = heartbeat_interval_ms
        # Held while a batch is processed; the rebalance listener takes it before partitions
        # are revoked, so a partition is never handed over with effects committed in the
        # database but offsets not yet committed in Kafka.
        self._lock = asyncio.Lock()
        # How many partitions are worked at once; keep it within the session pool's size.
        self._partition_slots = asyncio.Semaphore(partition_concurrency)
        # Up to this many consecutive records of a partition are applied in one transaction
        # (each with its own inbox row); if one of them fails, the batch is rolled back and
        # split: the records before it are applied again together (a run handler's failure
        # names no record: halves, until it is alone), the failing one alone, with the
        # retries and dead-lettering of a single record. 1 turns batching off.
        self.batch_size = max(batch_size, 1)
        # A poll that brought fewer than `batch_size` records waits this long, once, for more
        # before they are applied: under a trickle, more records per transaction for that
        # much latency. 0: what a poll brought is applied at once.
        self.poll_linger_s = poll_linger_ms / 1000
        # With a run handler: the records a poll brought for all partitions are first tried
        # as one run (each partition's in order); if they cannot be, or fail, each partition
        # is worked on its own as usual (splits, retries, dead letters).
        self.runs_across_partitions = runs_across_partitions and run_handler is not None
        self._pending: dict[TopicPartition, int] = {}
        self._consumer: AIOKafkaConsumer | None = None
        self._lag_at = 0.0
        self._lag_reported: set[TopicPartition] = set()

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until `stop` is set."""
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap_servers,
            group_id=self.name,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            isolation_level="read_committed",
            session_timeout_ms=self.session_timeout_ms,
            heartbeat_interval_ms=self.heartbeat_interval_ms,
        )
        producer = make_producer(self.bootstrap_servers, enable_idempotence=self.enable_idempotence)
        self._consumer = consumer
        consumer.subscribe(self.topics, listener=_Listener(self))
        await consumer.start()
        await producer.start()
        heartbeat.set_ready(True)
        try:
            while not stop.is_set():
                heartbeat.beat()
                batch = await consumer.getmany(timeout_ms=200, max_records=_POLL_RECORDS)
                if batch and self.poll_linger_s:
                    batch = await self._linger(consumer, batch)
                await self._measure_lag(consumer)
                if not batch:
                    continue
                async with self._lock:
                    if not await self._apply_poll(batch, stop):
                        # Partitions are independent (a customer's events share one), so they
                        # are worked concurrently while each keeps its own order: the database
                        # round trips of one overlap the CPU work of another.
                        await asyncio.gather(
                            *(
                                self._process_partition(tp, records, producer, stop)
                                for tp, records in batch.items()
                            )
                        )
                    await self._commit()
        finally:
            with contextlib.suppress(Exception):
                async with self._lock:
                    await self._commit()
            await producer.stop()
            await consumer.stop()
            self._consumer = None

    async def _linger(self, consumer: AIOKafkaConsumer, batch: _Poll) -> _Poll:
        """A small poll, topped up once after `poll_linger_s` with what arrived meanwhile
        (appended in order per partition); partitions revoked during the wait are dropped:
        their new owner reads them from the last committed offset."""
        count = sum(len(records) for records in batch.values())
        if count >= min(self.batch_size, _POLL_RECORDS):
            return batch
        await asyncio.sleep(self.poll_linger_s)
        more = await consumer.getmany(timeout_ms=0, max_records=_POLL_RECORDS - count)
        merged = {tp: list(records) for tp, records in batch.items()}
        for tp, records in more.items():
            merged.setdefault(tp, []).extend(records)
        assigned = consumer.assignment()
        return {tp: records for tp, records in merged.items() if tp in assigned}

    async def _apply_poll(self, batch: _Poll, stop: asyncio.Event) -> bool:
        """With `runs_across_partitions`: every record of the poll as one run (one
        transaction). False, with nothing applied, when that is not tried or fails: then the
        partitions are worked on their own."""
        if not self.runs_across_partitions or len(batch) < 2 or stop.is_set():
            return False
        works: list[list[_Work]] = []
        for records in batch.values():
            readable = self._readable_prefix(records)
            if len(readable) < len(records):  # one to dead-letter: the partition's own path
                return False
            works.append(readable)
        # Interleaved by the time the records were written (each partition's own order kept,
        # as merge only ever takes the head of a list): a reminder on one topic written after
        # its invoice on another is applied after it, as it happened.
        work = list(heapq.merge(*works, key=lambda w: w[0].timestamp))
        if len(work) > self.batch_size:
            return False
        heartbeat.beat()
        try:
            outcomes = await self._apply_work(work)
        except _RunFailed as failed:
            self._log_failed_run("consumer.poll_run_failed", len(work), failed)
            return False
        for tp, records in batch.items():
            self._pending[tp] = records[-1].offset + 1
        self._report_many(outcomes)
        return True

    async def _process_partition(
        self,
        tp: TopicPartition,
        records: list[ConsumerRecord[bytes, bytes]],
        producer: AIOKafkaProducer,
        stop: asyncio.Event,
    ) -> None:
        async with self._partition_slots:
            i = 0
            while i < len(records):
                if stop.is_set():
                    return
                heartbeat.beat()  # a long batch is work going on, not a stuck loop
                chunk = records[i : i + self.batch_size]
                applied, failure = (0, None)
                if len(chunk) > 1:
                    applied, failure = await self._apply_run(chunk)
                if applied:
                    self._pending[tp] = chunk[applied - 1].offset + 1
                    i += applied
                    if applied == len(chunk):
                        continue
                if stop.is_set():
                    return
                # The record the batch stopped at, alone; its failure there was its 1st attempt.
                record = records[i]
                await self._process(record, producer, stop, failed=failure)
                self._pending[tp] = record.offset + 1
                i += 1

    async def _measure_lag(self, consumer: AIOKafkaConsumer) -> None:
        """Per assigned partition: high watermark minus position, every 2 s at most."""
        now = asyncio.get_running_loop().time()
        if now - self._lag_at < 2.0:
            return
        self._lag_at = now
        assigned = consumer.assignment()
        for tp in self._lag_reported - assigned:  # revoked: another member reports it now
            CONSUMER_LAG.set(0, self._lag_attributes(tp))
        for tp in assigned:
            highwater = consumer.highwater(tp)
            if highwater is None:  # nothing fetched yet for this partition
                continue
            with contextlib.suppress(Exception):
                position = await consumer.position(tp)
                CONSUMER_LAG.set(max(highwater - position, 0), self._lag_attributes(tp))
        self._lag_reported = set(assigned)

    def _lag_attributes(self, tp: TopicPartition) -> dict[str, str | int]:
        return {"consumer": self.name, "topic": tp.topic, "partition": tp.partition}

    async def _commit(self) -> None:
        if not self._pending or self._consumer is None:
            return
        offsets, self._pending = self._pending, {}
        try:
            await self._consumer.commit(offsets)
        except (CommitFailedError, KafkaError) as exc:
            # The group moved on (rebalance): the new owner re-reads from the last committed
            # offset and the inbox turns the re-read into no-ops.
            log.warning("consumer.commit_failed", consumer=self.name, error=str(exc))

    async def _process(
        self,
        record: ConsumerRecord[bytes, bytes],
        producer: AIOKafkaProducer,
        stop: asyncio.Event,
        *,
        failed: Exception | None = None,
    ) -> Outcome:
        """One record in its own transaction; `failed`: its handler's error in a batch, which
        counts as the first attempt."""
        try:
            envelope = Envelope.from_record(
                key=record.key, value=record.value, headers=record.headers
            )
        except EnvelopeError as exc:
            return await self._dead_letter(record, producer, exc, event_id=None)
        if envelope.type not in BY_TYPE:
            # Not in this build's catalogue (a newer producer's type, or garbage): parked, so
            # that once this consumer is upgraded to know it, it can be re-driven (redrive.py).
            unknown = EnvelopeError(f"unknown event type {envelope.type!r}")
            return await self._dead_letter(record, producer, unknown, event_id=envelope.id)
        handler = self.handlers.get(envelope.type)
        if handler is None:  # a type this service does not react to
            return self._report(Outcome("ignored", envelope.id, type=envelope.type))
        try:
            event = envelope.event()
        except EnvelopeError as exc:
            return await self._dead_letter(
                record, producer, exc, event_id=envelope.id, event_type=envelope.type
            )

        attempt = 0
        while True:
            attempt += 1
            try:
                if failed is not None:
                    first, failed = failed, None
                    raise first
                applied = await self._apply(record, envelope, event, handler)
                return self._report(
                    Outcome("applied" if applied else "duplicate", envelope.id, type=envelope.type)
                )
            except Exception as exc:
                transient = _is_transient(exc)
                EVENTS_FAILED.add(
                    1,
                    {
                        "consumer": self.name,
                        "type": envelope.type,
                        "transient": str(transient).lower(),
                    },
                )
                if transient and not stop.is_set():
                    log.warning("consumer.transient", consumer=self.name, error=str(exc))
                    # still turning (liveness), but waiting for the database (readiness)
                    heartbeat.set_ready(False, "the database is unavailable")
                    await asyncio.sleep(min(self.retry_backoff_s * 2 ** min(attempt, 5), 5.0))
                    attempt = 0
                    continue
                if attempt >= self.max_attempts or stop.is_set():
                    return await self._dead_letter(
                        record, producer, exc, event_id=envelope.id, event_type=envelope.type
                    )
                log.warning("consumer.retry", consumer=self.name, attempt=attempt, error=repr(exc))
                await asyncio.sleep(self.retry_backoff_s * attempt)

    async def _apply_run(
        self, records: list[ConsumerRecord[bytes, bytes]]
    ) -> tuple[int, Exception | None]:
        """Apply a prefix of `records` (one partition's, in order) in one transaction: the
        inbox rows of the run, then the new events' effects, exactly as `_apply` does for one.

        Returns how many were applied (committed, outcomes reported) and, if the record after
        them failed, that error: the caller works that record alone (retries, dead letter),
        counting this failure as its first attempt. The prefix stops before a record that is
        not plainly applicable (unreadable, unknown type).
        """
        work = self._readable_prefix(records)
        if not work:
            return 0, None
        try:
            outcomes = await self._apply_work(work)
        except _RunFailed as failed:
            self._log_failed_run("consumer.batch_split", len(work), failed)
            return await self._split(records[: len(work)], failed.at, failed.error)
        self._report_many(outcomes)
        return len(work), None

    async def _apply_work(self, work: Sequence[_Work]) -> list[Outcome]:
        """One transaction: the inbox rows of `work`, then its new events' effects (the run
        handler for more than one, else each record's handler). Their outcomes, to report
        once committed; `_RunFailed` when the transaction failed."""
        # The record to blame for a failure, when one can be: the one whose handler raised.
        # A run handler's failure, the inbox insert's or the commit's names none.
        at: int | None = None
        try:
            async with self.session_factory() as session, session.begin():
                new = await self._inbox_rows(session, work)
                outcomes: list[Outcome] = []
                deliveries: list[tuple[int, ConsumerRecord[bytes, bytes], Delivery]] = []
                for index, (record, envelope, event) in enumerate(work):
                    if event is None:  # a type this service does not react to
                        outcomes.append(Outcome("ignored", envelope.id, type=envelope.type))
                    elif envelope.id in new:
                        new.discard(envelope.id)  # the same record twice in a run: once
                        deliveries.append((index, record, Delivery(event, envelope)))
                        outcomes.append(Outcome("applied", envelope.id, type=envelope.type))
                    else:
                        outcomes.append(Outcome("duplicate", envelope.id, type=envelope.type))
                if self.run_handler is not None and len(deliveries) > 1:
                    await self._handle_run(session, work, [d for _, _, d in deliveries])
                else:
                    for index, record, (event, envelope) in deliveries:
                        at = index
                        await self._handle(session, record, envelope, event)
                    at = None  # from here on, a failure is the commit's
        except Exception as exc:
            raise _RunFailed(exc, at) from exc
        return outcomes

    def _log_failed_run(self, what: str, records: int, failed: _RunFailed) -> None:
        error = f"{type(failed.error).__name__}: {failed.error}"[:500]
        log.info(what, consumer=self.name, records=records, failed_at=failed.at, error=error)

    async def _split(
        self, records: list[ConsumerRecord[bytes, bytes]], at: int | None, exc: Exception
    ) -> tuple[int, Exception | None]:
        """After `records` failed together (rolled back): apply again what can be, and say
        which record to work alone with which error (as `_apply_run` returns)."""
        if at is not None:  # the records before the failing one, again
            if at == 0:
                return 0, exc
            done, failure = await self._apply_run(records[:at])
            return (done, exc) if done == at else (done, failure)
        if len(records) == 1:
            return 0, exc
        # No record named: halves until the failing one is alone (log2(n) transactions more
        # for one poison record, instead of one per record).
        half = len(records) // 2
        done, failure = await self._apply_run(records[:half])
        if done < half:
            return done, failure
        rest, failure = await self._apply_run(records[half:])
        return half + rest, failure

    def _readable_prefix(self, records: list[ConsumerRecord[bytes, bytes]]) -> list[_Work]:
        """The records up to the first that cannot be read or typed (that one is worked alone,
        where it is dead-lettered)."""
        work: list[_Work] = []
        for record in records:
            try:
                envelope = Envelope.from_record(
                    key=record.key, value=record.value, headers=record.headers
                )
                if envelope.type not in BY_TYPE:
                    break
                handled = envelope.type in self.handlers
                work.append((record, envelope, envelope.event() if handled else None))
            except EnvelopeError:
                break
        return work

    async def _inbox_rows(self, session: AsyncSession, work: Sequence[_Work]) -> set[str]:
        """Insert the inbox rows of the handled records of a run; the ids that are new."""
        handled = [(record, envelope) for record, envelope, event in work if event is not None]
        if not handled:
            return set()
        inserted = await session.execute(
            self._inbox_insert,
            {
                "consumer": self.name,
                "event_ids": [envelope.id for _, envelope in handled],
                "types": [envelope.type for _, envelope in handled],
                "topics": [record.topic for record, _ in handled],
                "partitions": [record.partition for record, _ in handled],
                "offsets": [record.offset for record, _ in handled],
            },
        )
        return {row[0] for row in inserted}

    async def _handle_run(
        self, session: AsyncSession, work: Sequence[_Work], deliveries: list[Delivery]
    ) -> None:
        """The run handler, under one span linked to every record's trace (a run spans many
        traces; each invoice's trace can still be followed into this consumer)."""
        assert self.run_handler is not None
        topics = sorted({record.topic for record, _, _ in work})
        attributes: dict[str, str | int] = {
            "messaging.system": "kafka",
            "messaging.consumer.group.name": self.name,
            "messaging.batch.message_count": len(deliveries),
        }
        if len(topics) == 1:  # a run across partitions may span topics
            attributes["messaging.destination.name"] = topics[0]
        with tracer.start_as_current_span(
            f"{' '.join(topics)} process",
            kind=SpanKind.CONSUMER,
            links=links_to(d.envelope.traceparent for d in deliveries),
            attributes=attributes,
        ):
            await self.run_handler(session, deliveries)

    async def _apply(
        self,
        record: ConsumerRecord[bytes, bytes],
        envelope: Envelope,
        event: Event,
        handler: Handler,
    ) -> bool:
        """One transaction: the inbox row and the handler's effect. False for a duplicate.
        Both in the record's span (in a run, the inbox rows of all are written before)."""
        async with self.session_factory() as session, session.begin():
            with self._span(record, envelope):
                if not await self._inbox_rows(session, [(record, envelope, event)]):
                    return False
                await handler(session, event, envelope)
                return True

    async def _handle(
        self,
        session: AsyncSession,
        record: ConsumerRecord[bytes, bytes],
        envelope: Envelope,
        event: Event,
    ) -> None:
        """The record's handler, in the record's span."""
        with self._span(record, envelope):
            await self.handlers[envelope.type](session, event, envelope)

    def _span(
        self, record: ConsumerRecord[bytes, bytes], envelope: Envelope
    ) -> AbstractContextManager[Span]:
        """The record's own span: a child of the producer's trace, current while the handler
        runs so that what it stages in an outbox continues that trace."""
        return tracer.start_as_current_span(
            f"{record.topic} process",
            context=context_from(envelope.traceparent, envelope.tracestate),
            kind=SpanKind.CONSUMER,
            attributes={
                "messaging.system": "kafka",
                "messaging.consumer.group.name": self.name,
                "messaging.destination.name": record.topic,
                "messaging.message.id": envelope.id,
                "cloudevents.event_type": envelope.type,
            },
        )

    async def _dead_letter(
        self,
        record: ConsumerRecord[bytes, bytes],
        producer: AIOKafkaProducer,
        exc: BaseException,
        *,
        event_id: str | None,
        event_type: str | None = None,
    ) -> Outcome:
        """Park the record on `<topic>.dlt` with why; the offset moves on only once it is there."""
        error = f"{type(exc).__name__}: {exc}"[:4000]
        headers = [
            *record.headers,
            ("dlt_error", error.encode()),
            ("dlt_error_type", type(exc).__name__.encode()),
            ("dlt_consumer", self.name.encode()),
            ("dlt_original_topic", record.topic.encode()),
            ("dlt_original_partition", str(record.partition).encode()),
            ("dlt_original_offset", str(record.offset).encode()),
            ("dlt_failed_at", dt.datetime.now(dt.UTC).isoformat().encode()),
        ]
        # If this send fails we raise: the offset is not committed and the record is
        # retried after restart. A record is never dropped on the floor.
        await producer.send_and_wait(
            dead_letter_topic(record.topic), value=record.value, key=record.key, headers=headers
        )
        DLT_RECORDS.add(1, {"consumer": self.name, "topic": record.topic})
        log.error(
            "consumer.dead_lettered",
            consumer=self.name,
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            error=error,
        )
        return self._report(Outcome("dead_lettered", event_id, error, type=event_type))

    def _report_many(self, outcomes: Sequence[Outcome]) -> None:
        """`_report` for a run: the counter moved once per (type, outcome), not per record."""
        counts = Counter((o.type or "unknown", o.status) for o in outcomes)
        for (type_, status), n in counts.items():
            EVENTS_PROCESSED.add(n, {"consumer": self.name, "type": type_, "outcome": status})
        if not heartbeat.readiness()[0]:
            heartbeat.set_ready(True)
        if self.on_outcome is not None:
            for outcome in outcomes:
                self.on_outcome(outcome)

    def _report(self, outcome: Outcome) -> Outcome:
        EVENTS_PROCESSED.add(
            1,
            {"consumer": self.name, "type": outcome.type or "unknown", "outcome": outcome.status},
        )
        if not heartbeat.readiness()[0]:
            heartbeat.set_ready(True)  # the database answered again
        if self.on_outcome is not None:
            self.on_outcome(outcome)
        return outcome


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, owner: EventConsumer) -> None:
        self.owner = owner

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        # Wait for the batch in hand, then commit what it did before giving partitions away.
        async with self.owner._lock:
            await self.owner._commit()

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        # Nothing to restore: positions come from committed offsets, state from the database.
        return None
