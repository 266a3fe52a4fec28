"""Producer side, part one: write an event in the same transaction as the change it reports.

Service code calls `await outbox.add(session, event)` next to its own inserts; the route that
owns the transaction commits both at once. Nothing here talks to Kafka: the relay does.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Table, func, insert
from sqlalchemy.ext.asyncio import AsyncSession

from duewise_events.catalogue import Event
from duewise_events.envelope import Envelope
from duewise_events.tracing import current_trace_headers


class Outbox:
    """Adds events to one service's outbox table and wakes its relay at commit."""

    def __init__(self, table: Table, *, source: str, channel: str = "duewise_outbox") -> None:
        self.table = table
        self.source = source
        self.channel = channel
        # Built once: constructing the statement and its cache key for every event cost
        # ~0.13 ms of CPU (timeit); the values now go in as parameters.
        # NOTIFY is transactional: the relay hears it only if and when the caller commits.
        # Asked for in RETURNING so that it costs no extra round trip; PostgreSQL delivers
        # identical notifications of one transaction once, at commit.
        self._insert = insert(self.table).returning(func.pg_notify(self.channel, ""))

    async def add_many(
        self,
        session: AsyncSession,
        events: Sequence[Event],
        *,
        traceparents: Sequence[str | None] | None = None,
    ) -> list[Envelope]:
        """Stage many events at once (bulk import): one multi-row insert, one notification.

        `traceparents`, one per event, puts each event in its own trace (the scheduler's
        reminders continue their invoices' traces); by default all carry the active span's.
        """
        if not events:
            return []
        trace = current_trace_headers()
        parents = traceparents or [trace.get("traceparent")] * len(events)
        envelopes = [Envelope.wrap(event, source=self.source) for event in events]
        await session.execute(
            self._insert,
            [
                {
                    "event_id": env.id,
                    "topic": event.TOPIC,
                    "key": env.key,
                    "type": env.type,
                    "source": env.source,
                    "subject": None,
                    "time": env.time,
                    "payload": env.data,
                    "traceparent": parent,
                    "tracestate": None if traceparents else trace.get("tracestate"),
                }
                for env, event, parent in zip(envelopes, events, parents, strict=True)
            ],
        )
        return envelopes

    async def add(
        self, session: AsyncSession, event: Event, *, subject: str | None = None
    ) -> Envelope:
        """Stage `event` for publication in the caller's transaction; returns its envelope."""
        envelope = Envelope.wrap(event, source=self.source, subject=subject)
        trace = current_trace_headers()
        await session.execute(
            self._insert,
            {
                "event_id": envelope.id,
                "topic": event.TOPIC,
                "key": envelope.key,
                "type": envelope.type,
                "source": envelope.source,
                "subject": envelope.subject,
                "time": envelope.time,
                "payload": envelope.data,
                "traceparent": trace.get("traceparent"),
                "tracestate": trace.get("tracestate"),
            },
        )
        return envelope
