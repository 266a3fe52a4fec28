"""The risk consumer: the shared EventConsumer, with each partition's batch applied in one
transaction instead of one transaction per record.

Same contract as the library's: the inbox rows and the effects of the whole batch commit
together, and offsets are committed only after. A batch that fails for any reason (a
malformed record, a bug, the database) is handed back to the library's own one-record-at-a-
time path, which retries, dead-letters what keeps failing and keeps the partition moving.

Why: one transaction per event costs several round trips and a WAL flush per event; the
profile of a customer seen several times in a batch is also loaded and written once.
NOTE: this subclass reaches into EventConsumer's internals (`_partition_slots`, `_pending`,
`_process_partition`, `_report`); a batch-handler option in duewise_events would be the
proper home for it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence

import structlog
from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.structs import ConsumerRecord
from duewise_events.catalogue import BY_TYPE, Event
from duewise_events.consumer import EventConsumer, Outcome
from duewise_events.envelope import Envelope, EnvelopeError
from duewise_events.tracing import context_from, tracer
from opentelemetry import trace
from opentelemetry.trace import SpanKind
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from risk.domain.fold import CONSUMED
from risk.domain.thresholds import Thresholds
from risk.handlers import handlers_for
from risk.models import INBOX_TABLE
from risk.service.live import apply_batch

log = structlog.get_logger("duewise.risk.consumer")
_TYPES = frozenset(cls.TYPE for cls in CONSUMED)


class RiskConsumer(EventConsumer):
    """EventConsumer over the risk topics whose partitions are applied a batch at a time."""

    def __init__(
        self,
        *,
        name: str,
        topics: Sequence[str],
        session_factory: async_sessionmaker[AsyncSession],
        bootstrap_servers: str,
        thresholds: Thresholds,
        **kwargs: object,
    ) -> None:
        super().__init__(
            name=name,
            topics=topics,
            handlers=handlers_for(thresholds),
            session_factory=session_factory,
            inbox=INBOX_TABLE,
            bootstrap_servers=bootstrap_servers,
            **kwargs,  # type: ignore[arg-type]
        )
        self.thresholds = thresholds
        self.batches_applied = 0

    async def _process_partition(
        self,
        tp: TopicPartition,
        records: list[ConsumerRecord[bytes, bytes]],
        producer: AIOKafkaProducer,
        stop: asyncio.Event,
    ) -> None:
        parsed = _parse_all(records)
        if parsed is None or stop.is_set():
            # a malformed record in the batch: the library's path dead-letters it
            await super()._process_partition(tp, records, producer, stop)
            return
        async with self._partition_slots:
            try:
                outcomes = await self._apply_batch(records, parsed)
            except Exception as exc:  # the library's path retries, dead-letters, reports
                log.warning("risk.batch_fallback", consumer=self.name, error=repr(exc)[:500])
                outcomes = None
            if outcomes is not None:
                self.batches_applied += 1
                self._pending[tp] = records[-1].offset + 1
                for outcome in outcomes:
                    self._report(outcome)
                return
        await super()._process_partition(tp, records, producer, stop)

    async def _apply_batch(
        self,
        records: list[ConsumerRecord[bytes, bytes]],
        parsed: list[tuple[Envelope, Event | None]],
    ) -> list[Outcome]:
        """One transaction: the inbox rows of the batch, then every new event folded."""
        wanted = [(r, env, ev) for r, (env, ev) in zip(records, parsed, strict=True) if ev]
        outcomes: list[Outcome] = []
        with tracer.start_as_current_span(
            f"{records[0].topic} process batch",
            kind=SpanKind.CONSUMER,
            # a batch spans many traces: linked to each record's, so every invoice's trace
            # can be followed into risk
            links=_links(env for env, _ in parsed),
            attributes={
                "messaging.system": "kafka",
                "messaging.consumer.group.name": self.name,
                "messaging.destination.name": records[0].topic,
                "messaging.batch.message_count": len(records),
            },
        ):
            async with self.session_factory() as session, session.begin():
                new: set[str] = set()
                if wanted:
                    inserted = await session.execute(
                        insert(self.inbox)
                        .values(
                            [
                                {
                                    "consumer": self.name,
                                    "event_id": env.id,
                                    "type": env.type,
                                    "topic": r.topic,
                                    "partition": r.partition,
                                    "offset": r.offset,
                                }
                                for r, env, _ in wanted
                            ]
                        )
                        .on_conflict_do_nothing()
                        .returning(self.inbox.c.event_id)
                    )
                    new = {row[0] for row in inserted}
                items: list[tuple[Event, str]] = []
                seen: set[str] = set()
                for env, event in parsed:
                    if event is None:
                        outcomes.append(Outcome("ignored", env.id, type=env.type))
                    elif env.id in new and env.id not in seen:
                        seen.add(env.id)  # the same record twice in one batch: once
                        items.append((event, env.id))
                        outcomes.append(Outcome("applied", env.id, type=env.type))
                    else:
                        outcomes.append(Outcome("duplicate", env.id, type=env.type))
                if items:
                    await apply_batch(session, items, self.thresholds)
        return outcomes


def _parse_all(
    records: list[ConsumerRecord[bytes, bytes]],
) -> list[tuple[Envelope, Event | None]] | None:
    """Each record's envelope and event (None for types risk ignores); None if any is bad."""
    out: list[tuple[Envelope, Event | None]] = []
    for record in records:
        try:
            env = Envelope.from_record(key=record.key, value=record.value, headers=record.headers)
            if env.type not in BY_TYPE:  # the library's path dead-letters an unknown type
                return None
            out.append((env, env.event() if env.type in _TYPES else None))
        except EnvelopeError:
            return None
    return out


def _links(envelopes: Iterable[Envelope]) -> list[trace.Link]:
    """One link per distinct, valid trace context among the records."""
    links: dict[str, trace.Link] = {}
    for env in envelopes:
        if env.traceparent and env.traceparent not in links:
            ctx = trace.get_current_span(context_from(env.traceparent)).get_span_context()
            if ctx.is_valid:
                links[env.traceparent] = trace.Link(ctx)
    return list(links.values())
