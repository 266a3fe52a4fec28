"""How many invoice.events records dunning's and notify's consumers apply per second.

N customers, their invoices and some payments go straight onto invoice.events with the
library's envelope (as tests/faults scenario 3 puts them), on a Tansu broker of the run's own
and scratch databases on PostgreSQL (DATABASE_URL, default the system server). Then
`python -m dunning.cli consumer` and `python -m notify.cli consumer` run as real processes
with the devstack's environment, and the inbox rows of each are counted over time: the rate
is applied events per second from the first to the last row.

Ceilings, against the same broker and database in the same run:
- consume: a bare aiokafka loop over the same records (getmany, no work);
- tx: one INSERT per transaction into an inbox-shaped table of a scratch database with the
  same settings as the consumers' (the floor of a one-transaction-per-event consumer).

    .venv/bin/python -m bench.consumer_rate --customers 50 --invoices 1000 --payments 500
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import os
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import asyncpg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from duewise_dev._util import free_port
from duewise_dev.broker import TansuBroker, ensure_topics
from duewise_dev.postgres import scratch_database
from duewise_dev.services import all_topics
from duewise_events.catalogue import (
    AllocationSnapshot,
    ContactSnapshot,
    CustomerCreated,
    Event,
    InvoiceIssued,
    PaymentReceived,
)
from duewise_events.envelope import Envelope
from duewise_service.urls import plain_url
from rich.console import Console

from bench.report import Row, machine, markdown, now_utc, print_table

ROOT = Path(__file__).resolve().parents[1]
TOPIC = "invoice.events"
SERVICES = ("dunning", "notify")
TOKEN = "bench-consumer-rate-token-0123456789"


def book(customers: int, invoices: int, payments: int, seed: int = 7) -> list[Event]:
    """Customers, then each one's invoices, some paid in full or in part (scenario 3's mix)."""
    rng = random.Random(seed)
    today = dt.date.today()
    per_customer = max(invoices // customers, 1)
    paid = set(rng.sample(range(customers * per_customer), min(payments, invoices)))
    events: list[Event] = []
    for c in range(customers):
        cid = f"cus_cr_{c:05d}"
        events.append(
            CustomerCreated(
                customer_id=cid,
                name=f"Consumer Rate {c}",
                currency="EUR",
                timezone="Europe/Berlin",
                country="DE",
                locale="de-DE",
                payment_terms_days=30,
                contacts=[
                    ContactSnapshot(
                        id=f"con_cr_{c}", name="AP", email=f"ap{c}@cr.invalid", role="billing"
                    )
                ],
            )
        )
        for k in range(per_customer):
            n = c * per_customer + k
            total = rng.randrange(50_00, 5_000_00)
            inv = InvoiceIssued(
                customer_id=cid,
                invoice_id=f"inv_cr_{n:06d}",
                number=f"CR-{n:06d}",
                issue_date=today,
                due_date=today + dt.timedelta(days=rng.randrange(20, 40)),
                currency="EUR",
                total=total,
                balance=total,
            )
            events.append(inv)
            if n in paid:
                amount = total if rng.random() < 0.75 else total // 2
                left = total - amount
                events.append(
                    PaymentReceived(
                        customer_id=cid,
                        payment_id=f"pay_cr_{n:06d}",
                        amount=amount,
                        currency="EUR",
                        method="wire",
                        received_at=today,
                        allocations=[
                            AllocationSnapshot(
                                invoice_id=inv.invoice_id,
                                amount=amount,
                                invoice_balance=left,
                                invoice_status="paid" if left == 0 else "partially_paid",
                                due_date=inv.due_date,
                            )
                        ],
                    )
                )
    return events


async def publish(bootstrap: str, events: list[Event]) -> None:
    """Keyed by customer, as the relays do (tests/faults/consumer_kit.publish)."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", linger_ms=5, max_batch_size=256 * 1024
    )
    await producer.start()
    try:
        pending = []
        for event in events:
            env = Envelope.wrap(event, source="duewise/invoice")
            pending.append(
                await producer.send(
                    TOPIC, value=env.body(), key=env.key.encode(), headers=env.headers()
                )
            )
            if len(pending) >= 2000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()


async def consume_ceiling(bootstrap: str, n: int) -> float:
    """Records/s of a bare consume loop (own group, from the start) over the same topic."""
    consumer = AIOKafkaConsumer(
        TOPIC,
        bootstrap_servers=bootstrap,
        group_id=f"bench-ceiling-{time.time_ns()}",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
    )
    await consumer.start()
    try:
        seen, t0 = 0, time.perf_counter()  # includes joining the group, as a consumer's
        async with asyncio.timeout(120):
            while seen < n:
                batch = await consumer.getmany(timeout_ms=200, max_records=500)
                seen += sum(len(r) for r in batch.values())
        return n / max(time.perf_counter() - t0, 1e-9)
    finally:
        await consumer.stop()


async def tx_ceiling(dsn: str, n: int) -> float:
    """INSERT-per-transaction/s into an inbox-shaped table (one connection, as one partition)."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(
            """CREATE TABLE bench_inbox (consumer text, event_id text, type text, topic text,
               partition bigint, "offset" bigint, processed_at timestamptz DEFAULT now(),
               PRIMARY KEY (consumer, event_id))"""
        )
        t0 = time.perf_counter()
        for i in range(n):
            async with conn.transaction():
                await conn.execute(
                    "INSERT INTO bench_inbox VALUES ('bench', $1, 't', 'x', 0, $2) "
                    "ON CONFLICT DO NOTHING",
                    f"evt_{i}",
                    i,
                )
        return n / (time.perf_counter() - t0)
    finally:
        await conn.close()


def _migrate(service: str) -> Callable[[str], None]:
    def run(url: str) -> None:
        env = {**os.environ, f"{service.upper()}_DATABASE_URL": url, "DUEWISE_ENV": "test"}
        subprocess.run(
            [sys.executable, "-m", f"{service}.cli", "migrate"],
            cwd=ROOT,
            env=env,
            check=True,
            capture_output=True,
            timeout=180,
        )

    return run


@contextlib.asynccontextmanager
async def databases(server: str, async_commit: bool) -> AsyncIterator[dict[str, str]]:
    async with contextlib.AsyncExitStack() as exits:
        names = (*SERVICES, "ceiling")
        urls = await asyncio.gather(
            *(
                exits.enter_async_context(
                    scratch_database(
                        server, f"bench_cr_{s}", _migrate(s) if s in SERVICES else None
                    )
                )
                for s in names
            )
        )
        if async_commit:  # what tests/faults' consumer_kit does to its scratch databases
            conn = await asyncpg.connect(plain_url(server))
            try:
                for url in urls:
                    name = url.rsplit("/", 1)[1].split("?")[0]
                    await conn.execute(f'ALTER DATABASE "{name}" SET synchronous_commit = off')
            finally:
                await conn.close()
        yield dict(zip(names, urls, strict=True))


def spawn(
    service: str, db: str, bootstrap: str, logs: Path, *, profile: bool = False
) -> subprocess.Popen[bytes]:
    """`python -m <service>.cli consumer` with the devstack's environment (Service.env)."""
    prefix = service.upper()
    env = {k: v for k, v in os.environ.items() if not k.endswith("_DATABASE_URL")}
    env.update(
        {
            f"{prefix}_DATABASE_URL": db,
            "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "DUEWISE_ADMIN_TOKEN": TOKEN,
            f"{prefix}_PORT": str(free_port()),
            f"{prefix}_HOST": "127.0.0.1",
            "PYTHONUNBUFFERED": "1",
            "OTEL_SDK_DISABLED": "true",
        }
    )
    with (logs / f"{service}-consumer.log").open("ab") as log:
        return subprocess.Popen(
            [
                sys.executable,
                *(("-m", "cProfile", "-o", str(logs / f"{service}.prof")) if profile else ()),
                *("-m", f"{service}.cli", "consumer"),
            ],
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process `pid` so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Watched:
    rate: float  # applied events/s, first to last inbox row
    count: int
    span: float
    transactions: int  # distinct processed_at (now() is the transaction's start)
    cpu_ms: float  # the consumer process's CPU per event, from its first row to the last


async def watch(dsn: str, n: int, timeout_s: float, pid: int) -> Watched:
    """Poll the inbox until `n` rows (every 0.2 s)."""
    conn = await asyncpg.connect(plain_url(dsn))
    try:
        deadline = time.monotonic() + timeout_s
        count, cpu0, count0 = 0, 0.0, 0
        while time.monotonic() < deadline:
            count = int(await conn.fetchval("SELECT count(*) FROM inbox"))
            if count and not count0:
                cpu0, count0 = cpu_seconds(pid), count
            if count >= n:
                break
            await asyncio.sleep(0.2)
        cpu = cpu_seconds(pid) - cpu0
        row = await conn.fetchrow(
            "SELECT min(processed_at), max(processed_at), count(DISTINCT processed_at) FROM inbox"
        )
        first, last, txs = (row[0], row[1], int(row[2])) if row else (None, None, 0)
        span = (last - first).total_seconds() if first and last else 0.0
        per_event = cpu / (count - count0) * 1000 if count > count0 else 0.0
        return Watched((count - 1) / span if span > 0 else 0.0, count, span, txs, per_event)
    finally:
        await conn.close()


async def run(args: argparse.Namespace, console: Console) -> tuple[list[Row], list[str]]:
    events = book(args.customers, args.invoices, args.payments)
    n = len(events)
    logs = Path(tempfile.mkdtemp(prefix="bench-consumer-rate-"))
    broker = TansuBroker(free_port(), log_path=logs / "tansu.log")
    broker.start()
    procs: list[subprocess.Popen[bytes]] = []
    try:
        await ensure_topics(broker.bootstrap, all_topics())
        async with databases(args.database_url, args.async_commit) as dbs:
            console.print(f"publishing {n} events to {TOPIC} …")
            await publish(broker.bootstrap, events)
            consume = await consume_ceiling(broker.bootstrap, n)
            tx = await tx_ceiling(plain_url(dbs["ceiling"]), min(n, 2000))
            console.print(f"starting consumers (logs in {logs}) …")
            procs = [
                spawn(s, dbs[s], broker.bootstrap, logs, profile=args.profile) for s in SERVICES
            ]
            results = await asyncio.gather(
                *(
                    watch(dbs[s], n, args.timeout, proc.pid)
                    for s, proc in zip(SERVICES, procs, strict=True)
                )
            )
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
        broker.stop()
    rows = [Row("records on invoice.events", str(n))]
    for service, w in zip(SERVICES, results, strict=True):
        rows.append(
            Row(
                f"{service} consumer, applied/s ({w.count}/{n} in {w.span:.1f} s, "
                f"{w.transactions} transactions)",
                f"{w.rate:.1f}",
                f"{tx:.0f}",
                f"{w.rate / tx * 100:.1f}%",
                "≥ 300/s (issue #8)",
                "PASS" if w.count >= n and w.rate >= 300 else "MISS",
            )
        )
        rows.append(
            Row(
                f"{service} consumer, CPU ms per event (its process; 1000/x = events/s a core)",
                f"{w.cpu_ms:.2f}",
            )
        )
    rows.append(Row("ceiling: bare consume loop, records/s", f"{consume:.0f}"))
    rows.append(Row("ceiling: one INSERT per transaction, tx/s", f"{tx:.0f}"))
    notes = [
        f"{machine()}; load average {os.getloadavg()[0]:.1f} at the end; {now_utc()}",
        f"{args.customers} customers, {args.invoices} invoices, {args.payments} payments, "
        "all on the topic before the consumers start (a backlog drained)",
        "synchronous_commit "
        + ("off (as tests/faults)" if args.async_commit else "as the server's default"),
        "ratio: applied/s to the one-INSERT-per-transaction ceiling",
    ]
    return rows, notes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", type=int, default=50)
    parser.add_argument("--invoices", type=int, default=1000)
    parser.add_argument("--payments", type=int, default=500)
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per consumer")
    parser.add_argument("--async-commit", action="store_true", help="synchronous_commit=off")
    parser.add_argument(
        "--database-url",
        default=os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"),
    )
    parser.add_argument(
        "--profile", action="store_true", help="run the consumers under cProfile (<logs>/*.prof)"
    )
    parser.add_argument("--markdown", type=Path, help="also write the table here")
    args = parser.parse_args()
    console = Console()
    rows, notes = asyncio.run(run(args, console))
    title = "Consumer rate (invoice.events → dunning, notify)"
    print_table(console, title, rows, notes)
    if args.markdown:
        args.markdown.write_text(markdown(title, rows, notes))


if __name__ == "__main__":
    main()
