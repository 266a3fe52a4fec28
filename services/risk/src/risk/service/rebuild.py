"""Rebuild every profile from the topics, from the beginning: `python -m risk.cli rebuild`.

The same fold as the live path (`risk.domain.fold.step`), run in memory over every record of
invoice.events, dunning.events and notify.events up to their current ends, then written in
one transaction (TRUNCATE + COPY) with no event emitted. Stop the consumer first; afterwards
its group's offsets are set to where the rebuild stopped reading, so it carries on from there.

Order: a customer's events share a partition within a topic, so each topic's own order is
kept. Across topics, a customer's dunning and notify events are merged into its invoice
events by their CloudEvents time, which is the order the live consumer sees them in.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import multiprocessing
import time
import zlib
from collections import defaultdict, deque
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import asyncpg
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.structs import ConsumerRecord
from duewise_events import topic_reader
from duewise_events.catalogue import (
    BY_TYPE,
    DUNNING_EVENTS,
    INVOICE_EVENTS,
    NOTIFY_EVENTS,
    Event,
)

from risk.domain.effects import Effects
from risk.domain.fold import CONSUMED, step
from risk.domain.score import score
from risk.domain.state import CustomerState
from risk.domain.thresholds import Thresholds
from risk.domain.worklist import worklist_row
from risk.models import WorklistRow, utcnow

CONSUMED_SET = frozenset(CONSUMED)
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
SIDE_TOPICS = (DUNNING_EVENTS, NOTIFY_EVENTS)


@dataclass
class RebuildResult:
    records: int = 0
    applied: int = 0
    skipped: int = 0  # malformed or of a type risk does not read (the live path DLTs/ignores)
    customers: int = 0
    read_s: float = 0.0
    write_s: float = 0.0
    ends: dict[str, dict[int, int]] = field(default_factory=dict)


class Rebuilder:
    """Folds events for many customers in memory and keeps the rows they produce."""

    def __init__(self, thresholds: Thresholds) -> None:
        self.th = thresholds
        self.states: dict[str, CustomerState] = {}
        self.movements: list[tuple[Any, ...]] = []
        self.reminders: dict[str, list[Any]] = {}
        self.signals: dict[str, dict[str, Any]] = {}
        self.applied = 0

    def apply(self, event: Event, event_id: str) -> Effects:
        state = self.states.get(event.customer_id)
        if state is None:
            state = self.states[event.customer_id] = CustomerState(customer_id=event.customer_id)
        fx = step(state, event, event_id, self.th)
        self.applied += fx.applied
        for m in fx.movements:
            self.movements.append(
                (m.customer_id, m.invoice_id, m.currency, m.on, m.due, m.amount, m.kind, m.ref)
            )
        for r in fx.reminders:  # as add_reminders' upsert
            row = self.reminders.get(r.id)
            if row is None:
                self.reminders[r.id] = [
                    r.id,
                    r.customer_id,
                    r.step_key,
                    r.on,
                    r.currency,
                    list(r.invoice_ids),
                    r.sent,
                ]
            elif r.sent:
                row[6], row[3] = True, r.on
        for e in fx.raised:
            self.signals.setdefault(
                e.signal_id, {**e.model_dump(), "cleared_at": None, "clear_reason": None}
            )
        for c in fx.cleared:
            if c.signal_id in self.signals:
                self.signals[c.signal_id]["cleared_at"] = c.cleared_at
                self.signals[c.signal_id]["clear_reason"] = c.reason
        return fx

    def profile_rows(self) -> list[tuple[Any, ...]]:
        rows = []
        for s in self.states.values():
            # The live path rescored after every applied event; only the last score is kept,
            # and it is a function of the final state, so scoring once here is the same.
            result = score(s, self.th) if s.known and s.now is not None else None
            if result is not None:
                s.score, s.band = result.score, result.band
            factors = [f.as_dict() for f in result.factors] if result else []
            rows.append(
                (
                    s.customer_id,
                    s.known,
                    s.currency,
                    json.dumps(s.to_json()),
                    result.score if result else None,
                    result.band if result else None,
                    json.dumps(factors),
                    s.instant,
                )
            )
        return rows

    def worklist_rows(self) -> list[tuple[Any, ...]]:
        """The known customers' worklist rows (call after `profile_rows`, which scores)."""
        now = utcnow()
        rows = []
        for s in self.states.values():
            if s.known:
                row = {**worklist_row(s), "updated_at": now}
                rows.append(tuple(row[c] for c in WORKLIST_COLUMNS))
        return rows

    def signal_rows(self) -> list[tuple[Any, ...]]:
        return [
            (
                r["signal_id"],
                r["customer_id"],
                r["kind"],
                r["positive"],
                r["severity"],
                r["summary"],
                r["recommendation"],
                json.dumps(r["evidence"]),
                r["raised_at"],
                r["cleared_at"],
                r["clear_reason"],
            )
            for r in self.signals.values()
        ]


def parse(record: ConsumerRecord) -> tuple[Event, str, dt.datetime] | None:
    """(event, id, CloudEvents time) of a record, or None for what the live consumer ignores
    or dead-letters. The body is validated straight from its JSON bytes (pydantic-core), the
    fast path for millions of records; anything that fails is skipped as the DLT would."""
    try:
        headers = dict(record.headers)
        cls = BY_TYPE.get(headers["ce_type"].decode())
        if cls is None or cls not in CONSUMED_SET or record.value is None:
            return None
        event = cls.model_validate_json(record.value)
        raw_time = headers.get("ce_time")
        when = dt.datetime.fromisoformat(raw_time.decode()) if raw_time else EPOCH
        return event, headers["ce_id"].decode(), when
    except (KeyError, ValueError, UnicodeDecodeError):  # pydantic's ValidationError too
        return None


async def read_topic(
    bootstrap: str,
    topic: str,
    on_batch: Callable[[list[ConsumerRecord]], Awaitable[None] | None],
) -> dict[int, int]:
    """Every record of `topic` from the beginning to its end now; returns the end offsets."""
    ends = await topic_reader.end_offsets(bootstrap, topic)
    if not any(ends.values()):
        return ends  # an empty topic (stopping an unassigned consumer trips aiokafka)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=8 * 1024 * 1024,
        fetch_max_bytes=64 * 1024 * 1024,
    )
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p, end in ends.items() if end > 0]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        left = {tp: ends[tp.partition] for tp in tps}
        while left:
            batch = await consumer.getmany(*left, timeout_ms=500, max_records=5000)
            for tp, records in batch.items():
                records = [r for r in records if r.offset < left.get(tp, 0)]
                if records:
                    result = on_batch(records)
                    if result is not None:
                        await result
                    if records[-1].offset + 1 >= ends[tp.partition]:
                        left.pop(tp, None)
            for tp in list(left):
                if await consumer.position(tp) >= left[tp]:
                    left.pop(tp)
        return ends
    finally:
        await consumer.stop()


@dataclass(frozen=True)
class Shard:
    """Which customers a rebuild worker folds: those whose id hashes to `index` of `count`.

    Every worker reads every record (cheap) and folds only its own customers (the cost), so a
    customer's events stay in one worker, in order, whatever the topics' partitioning.
    """

    index: int = 0
    count: int = 1

    def owns(self, key: bytes | None) -> bool:
        return self.count == 1 or zlib.crc32(key or b"") % self.count == self.index


async def fold_topics(
    bootstrap: str,
    thresholds: Thresholds,
    topics: Sequence[str] = (INVOICE_EVENTS, *SIDE_TOPICS),
    shard: Shard = Shard(),
) -> tuple[Rebuilder, RebuildResult]:
    """Read the topics and fold this shard's customers' events in memory."""
    result = RebuildResult()
    builder = Rebuilder(thresholds)
    t0 = time.perf_counter()
    # dunning and notify first, by customer and time, to be merged into invoice.events
    side: dict[str, deque[tuple[dt.datetime, Event, str]]] = defaultdict(deque)
    side_items: list[tuple[dt.datetime, Event, str]] = []

    def collect(records: list[ConsumerRecord]) -> None:
        for record in records:
            result.records += 1
            if not shard.owns(record.key):
                continue
            parsed = parse(record)
            if parsed is None:
                result.skipped += 1
                continue
            event, eid, when = parsed
            side_items.append((when, event, eid))

    for topic in topics:
        if topic != INVOICE_EVENTS:
            result.ends[topic] = await read_topic(bootstrap, topic, collect)
    side_items.sort(key=lambda item: item[0])  # stable: a topic's own order breaks ties
    for when, event, eid in side_items:
        side[event.customer_id].append((when, event, eid))
    side_items.clear()

    def fold(records: list[ConsumerRecord]) -> None:
        for record in records:
            result.records += 1
            if not shard.owns(record.key):
                continue
            parsed = parse(record)
            if parsed is None:
                result.skipped += 1
                continue
            event, eid, when = parsed
            waiting = side.get(event.customer_id)
            while waiting and waiting[0][0] < when:
                _, earlier, earlier_id = waiting.popleft()
                builder.apply(earlier, earlier_id)
            builder.apply(event, eid)

    if INVOICE_EVENTS in topics:
        result.ends[INVOICE_EVENTS] = await read_topic(bootstrap, INVOICE_EVENTS, fold)
    for waiting in side.values():
        for _, event, eid in waiting:
            builder.apply(event, eid)
    result.applied = builder.applied
    result.customers = len(builder.states)
    result.read_s = time.perf_counter() - t0
    return builder, result


PROFILE_COLUMNS = ("customer_id", "known", "currency", "state", "score", "band", "factors", "as_of")
SIGNAL_COLUMNS = (
    "signal_id",
    "customer_id",
    "kind",
    "positive",
    "severity",
    "summary",
    "recommendation",
    "evidence",
    "raised_at",
    "cleared_at",
    "clear_reason",
)
MOVEMENT_COLUMNS = ("customer_id", "invoice_id", "currency", "on", "due", "amount", "kind", "ref")
REMINDER_COLUMNS = ("id", "customer_id", "step_key", "on", "currency", "invoice_ids", "sent")
WORKLIST_COLUMNS = tuple(WorklistRow.model_fields)
#: Everything a rebuild replaces.
TABLES = "customer_profile, risk_signal, ar_movement, reminder_log, worklist_row"


async def truncate(database_url: str) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(f"TRUNCATE {TABLES}")
    finally:
        await conn.close()


async def write(database_url: str, builder: Rebuilder, *, truncate_first: bool) -> None:
    """Write the rebuilt rows (COPY), in one transaction; with `truncate_first`, replacing
    what the tables held in that same transaction."""
    conn = await asyncpg.connect(database_url)
    try:
        async with conn.transaction():
            if truncate_first:
                await conn.execute(f"TRUNCATE {TABLES}")
            for table, columns, rows in (
                ("customer_profile", PROFILE_COLUMNS, builder.profile_rows()),
                ("risk_signal", SIGNAL_COLUMNS, builder.signal_rows()),
                ("ar_movement", MOVEMENT_COLUMNS, builder.movements),
                ("reminder_log", REMINDER_COLUMNS, [tuple(r) for r in builder.reminders.values()]),
                ("worklist_row", WORKLIST_COLUMNS, builder.worklist_rows()),
            ):
                if rows:
                    await conn.copy_records_to_table(table, records=rows, columns=list(columns))
    finally:
        await conn.close()


async def commit_group_offsets(bootstrap: str, group: str, ends: dict[str, dict[int, int]]) -> None:
    """Point the live consumer's group at where the rebuild stopped reading."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False
    )
    await consumer.start()
    try:
        offsets = {
            TopicPartition(topic, p): off
            for topic, parts in ends.items()
            for p, off in parts.items()
        }
        if offsets:
            consumer.assign(list(offsets))
            await consumer.commit(offsets)
    finally:
        await consumer.stop()


async def _fold_and_write(
    database_url: str,
    bootstrap: str,
    thresholds: Thresholds,
    topics: Sequence[str],
    shard: Shard,
) -> RebuildResult:
    builder, result = await fold_topics(bootstrap, thresholds, topics, shard)
    t0 = time.perf_counter()
    await write(database_url, builder, truncate_first=shard.count == 1)
    result.write_s = time.perf_counter() - t0
    return result


def _worker(
    database_url: str, bootstrap: str, thresholds: Thresholds, topics: Sequence[str], shard: Shard
) -> RebuildResult:
    """One worker process: fold its shard and COPY its rows."""
    return asyncio.run(_fold_and_write(database_url, bootstrap, thresholds, topics, shard))


async def rebuild(
    database_url: str,
    bootstrap: str,
    thresholds: Thresholds,
    *,
    group: str | None = "risk",
    topics: Sequence[str] = (INVOICE_EVENTS, *SIDE_TOPICS),
    workers: int = 1,
) -> RebuildResult:
    """Fold the topics from the beginning and replace the profiles; no events are emitted.

    With one worker the tables are replaced in one transaction. With several (one process
    each, for the cores) the tables are emptied first and each worker writes its customers
    in a transaction of its own: if one fails, the tables are emptied again and the error
    raised, so run the rebuild again.
    """
    if workers <= 1:
        result = await _fold_and_write(database_url, bootstrap, thresholds, topics, Shard())
    else:
        await truncate(database_url)
        loop = asyncio.get_running_loop()
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            try:
                parts = await asyncio.gather(
                    *(
                        loop.run_in_executor(
                            pool,
                            _worker,
                            database_url,
                            bootstrap,
                            thresholds,
                            tuple(topics),
                            Shard(i, workers),
                        )
                        for i in range(workers)
                    )
                )
            except BaseException:
                await truncate(database_url)
                raise
        result = RebuildResult(
            records=parts[0].records,
            applied=sum(p.applied for p in parts),
            skipped=sum(p.skipped for p in parts),
            customers=sum(p.customers for p in parts),
            read_s=max(p.read_s for p in parts),
            write_s=max(p.write_s for p in parts),
            ends=parts[0].ends,
        )
    if group is not None:
        await commit_group_offsets(bootstrap, group, result.ends)
    return result
