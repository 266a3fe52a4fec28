"""The raw ceilings every result is a ratio to, measured against the same servers.

- COPY: asyncpg `copy_records_to_table` into a scratch table shaped like an invoice row
  (13 columns: text ids, dates, bigint money, jsonb lines; a plain heap, no indexes).
- Produce: aiokafka with the relay's own producer settings (`make_producer`: acks=all,
  linger 2 ms), ~1 KB values keyed like customer ids, into a scratch topic.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import random
import time
from dataclasses import dataclass

import asyncpg
from duewise_dev.broker import ensure_topics
from duewise_events.kafka import make_producer

from bench.stack import PARTITIONS

SCRATCH_TABLE = "bench_copy_scratch"
SCRATCH_TOPIC = "bench.produce.scratch"
_COLUMNS = (
    "id", "customer_id", "number", "external_id", "issue_date", "due_date", "currency",
    "total", "balance", "status", "po_number", "lines", "created_at",
)  # fmt: skip


@dataclass(frozen=True)
class Ceiling:
    rate: float  # best of the runs, per second
    runs: tuple[float, ...]
    n: int


async def copy_ceiling(dsn: str, *, rows: int = 200_000, runs: int = 3) -> Ceiling:
    """Best-of-`runs` rows/s of one COPY of `rows` invoice-shaped rows."""
    records = _invoice_records(rows)
    conn = await asyncpg.connect(dsn)
    rates: list[float] = []
    try:
        await conn.execute(f"DROP TABLE IF EXISTS {SCRATCH_TABLE}")
        await conn.execute(
            f"""CREATE TABLE {SCRATCH_TABLE} (
                id text NOT NULL, customer_id text NOT NULL, number text NOT NULL,
                external_id text, issue_date date NOT NULL, due_date date NOT NULL,
                currency text NOT NULL, total bigint NOT NULL, balance bigint NOT NULL,
                status text NOT NULL, po_number text, lines jsonb NOT NULL,
                created_at timestamptz NOT NULL)"""
        )
        for _ in range(runs):
            await conn.execute(f"TRUNCATE {SCRATCH_TABLE}")
            await conn.execute("CHECKPOINT")  # each run starts from the same state
            t0 = time.perf_counter()
            await conn.copy_records_to_table(SCRATCH_TABLE, records=records, columns=_COLUMNS)
            rates.append(rows / (time.perf_counter() - t0))
        await conn.execute(f"DROP TABLE {SCRATCH_TABLE}")
    finally:
        await conn.close()
    return Ceiling(max(rates), tuple(rates), rows)


async def produce_ceiling(
    bootstrap: str, *, messages: int = 50_000, runs: int = 3, size: int = 1024
) -> Ceiling:
    """Best-of-`runs` msgs/s for `messages` acknowledged (acks=all) sends, pipelined."""
    await ensure_topics(bootstrap, {SCRATCH_TOPIC: PARTITIONS})
    rng = random.Random(7)
    keys = [f"cus_{rng.getrandbits(120):030x}".encode() for _ in range(500)]
    body = json.dumps({"pad": "x" * (size - 12)}).encode()[:size]
    producer = make_producer(bootstrap)
    await producer.start()
    rates: list[float] = []
    try:
        await producer.send_and_wait(SCRATCH_TOPIC, body, key=keys[0])  # metadata, connections
        for _ in range(runs):
            t0 = time.perf_counter()
            futures: list[asyncio.Future[object]] = []
            for i in range(messages):
                # send() only waits when the accumulator is full; the futures resolve on ack.
                futures.append(await producer.send(SCRATCH_TOPIC, body, key=keys[i % len(keys)]))
            await asyncio.gather(*futures)
            rates.append(messages / (time.perf_counter() - t0))
    finally:
        await producer.stop()
    return Ceiling(max(rates), tuple(rates), messages)


def _invoice_records(n: int) -> list[tuple[object, ...]]:
    rng = random.Random(1)
    today = dt.date(2026, 11, 23)
    now = dt.datetime.now(dt.UTC)
    customers = [f"cus_{rng.getrandbits(120):030x}" for _ in range(500)]
    out: list[tuple[object, ...]] = []
    for i in range(n):
        qty, price = rng.randint(1, 20), rng.randint(100, 500_000)
        lines = json.dumps([{"description": "Widgets", "quantity": qty, "unit_price": price}])
        issue = today - dt.timedelta(days=rng.randint(0, 120))
        out.append((
            f"inv_{i:032x}", customers[i % len(customers)], f"INV-{i}", f"X-{i}", issue,
            issue + dt.timedelta(days=30), "EUR", qty * price, qty * price, "open",
            f"PO-{i % 977}", lines, now,
        ))  # fmt: skip
    return out
