"""Watching the invoice outbox drain, and checking what reached the topic."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import asyncpg
from duewise_events import topic_reader

from bench.stack import TOPIC


async def outbox_mark(dsn: str) -> int:
    """The highest outbox id now: events after it belong to what runs next."""
    conn = await asyncpg.connect(dsn)
    try:
        return int(await conn.fetchval("SELECT coalesce(max(id), 0) FROM outbox"))
    finally:
        await conn.close()


async def wait_drained(dsn: str, *, timeout_s: float, poll_s: float = 0.05) -> float:
    """Wait until no outbox row is unpublished; the monotonic time it was first seen empty."""
    conn = await asyncpg.connect(dsn)
    try:
        async with asyncio.timeout(timeout_s):
            while True:
                left = await conn.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NULL")
                now = time.perf_counter()
                if left == 0:
                    return now
                await asyncio.sleep(poll_s)
    finally:
        await conn.close()


@dataclass(frozen=True)
class TopicCheck:
    expected: int  # outbox events of the type, after the mark
    found: int  # distinct of them seen on the topic
    records: int  # records of those events seen (duplicates included: at least once)
    missing_sample: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return self.expected == self.found


async def check_topic(
    dsn: str,
    bootstrap: str,
    *,
    after_id: int,
    event_type: str,
    since: dict[int, int],
    timeout_s: float = 120.0,
) -> TopicCheck:
    """Every `event_type` outbox event with id > `after_id` is on the topic, by ce_id.

    Counted by id set, not by offsets: Tansu's ListOffsets can answer one short (so a
    reader starting at `since` may see one earlier record), and the relay is at least once.
    """
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT event_id FROM outbox WHERE id > $1 AND type = $2", after_id, event_type
        )
    finally:
        await conn.close()
    expected = {r["event_id"] for r in rows}
    seen: set[str] = set()
    matching = 0
    scanned = 0

    def until(records: list[topic_reader.Record]) -> bool:
        nonlocal matching, scanned
        for rec in records[scanned:]:
            headers = dict(rec.headers)
            ce_id = headers.get("ce_id", b"").decode()
            if ce_id in expected:
                matching += 1
                seen.add(ce_id)
        scanned = len(records)
        return len(seen) >= len(expected)

    await topic_reader.read(bootstrap, TOPIC, since=since, until=until, timeout_s=timeout_s)
    missing = tuple(sorted(expected - seen)[:3])
    return TopicCheck(len(expected), len(seen), matching, missing)
