"""CPU ms per event of risk's consumer process (`python -m risk.cli consumer`), issue #8.

`--customers` customers with `--events-per-customer` invoice.events records each (risk_bench's
histories: invoices paid in full, in parts, bounced and paid again, left open) go onto a Tansu
broker of the run's own, keyed by customer; a scratch database on PostgreSQL (DATABASE_URL,
default the system server) is migrated by `risk.cli migrate`. Then the consumer runs as a real
process with the OpenTelemetry SDK on as deployed (nothing exported: spans not sampled, the
metrics kept for a scrape), and its inbox rows are counted (consumer_rate.watch): CPU of the
process from the first inbox row to the last, per event.

Two shapes of input:
- backlog (default): every record is on the topic before the consumer starts, so each poll
  brings hundreds of records per partition (a consumer catching up);
- `--rate R`: the records are published at R per second, customers interleaved, while the
  consumer runs, so polls bring a few records each (the steady load of bench/load_mix).

    .venv/bin/python -m bench.risk_consumer_rate --customers 500 --events-per-customer 20
    .venv/bin/python -m bench.risk_consumer_rate --customers 400 --events-per-customer 5 --rate 100
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import random
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

from aiokafka import AIOKafkaProducer
from duewise_dev._util import free_port
from duewise_dev.broker import TansuBroker, ensure_topics
from duewise_dev.postgres import scratch_database
from duewise_dev.services import all_topics
from duewise_events.envelope import Envelope
from rich.console import Console

from bench.consumer_rate import Watched, _migrate, watch
from bench.report import Row, machine, now_utc, print_table
from bench.risk_bench import customer_events, produce
from bench.stack import TOPIC, Log

ROOT = Path(__file__).resolve().parents[1]


async def publish_paced(
    bootstrap: str,
    customers: int,
    per: int,
    seed: int,
    rate: float,
    first_applied: Callable[[], Awaitable[None]],
) -> int:
    """risk_bench's histories, customers interleaved (each one's own order kept), `rate`/s;
    the pace starts once `first_applied` returns after the first record (the consumer has
    joined its group by then, so the run is not a backlog built up during start-up)."""
    queues = [
        customer_events(f"cus_{c:07d}", per, random.Random(seed * 1_000_003 + c))
        for c in range(customers)
    ]
    order = [(c, i) for i in range(per) for c in range(customers) if i < len(queues[c])]
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=2)
    await producer.start()
    loop = asyncio.get_running_loop()
    t0, now = loop.time(), dt.datetime.now(dt.UTC)
    try:
        for k, (c, i) in enumerate(order):
            type_, body = queues[c][i]
            cid = f"cus_{c:07d}"
            env = Envelope(id=str(uuid.uuid4()), source="duewise/invoice", type=type_,
                           time=now, key=cid, data=body)  # fmt: skip
            await producer.send(TOPIC, value=env.body(), key=cid.encode(), headers=env.headers())
            if k == 0:
                await producer.flush()
                await first_applied()
                t0 = loop.time()
            ahead = t0 + (k + 1) / rate - loop.time()
            if ahead > 0:
                await asyncio.sleep(ahead)
        await producer.flush()
    finally:
        await producer.stop()
    return len(order)


_PROFILED = """
import cProfile, runpy, sys, time
out = sys.argv.pop(1)
profile = cProfile.Profile(time.process_time)
profile.enable()
try:
    runpy.run_module("risk.cli", run_name="__main__", alter_sys=True)
finally:
    profile.disable()
    profile.dump_stats(out)
"""


def start_consumer(db: str, bootstrap: str, logs: Path, profile: bool) -> subprocess.Popen[bytes]:
    """The service's consumer as deployed: its own settings from the environment, the SDK on."""
    env = {k: v for k, v in os.environ.items() if not k.endswith("_DATABASE_URL")}
    env.pop("OTEL_SDK_DISABLED", None)
    env.update({"RISK_DATABASE_URL": db, "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
                "PYTHONUNBUFFERED": "1"})  # fmt: skip
    run: tuple[str, ...] = ("-m", "risk.cli", "consumer")
    if profile:  # CPU time, not wall: waits on the database and broker are not the process's
        run = ("-c", _PROFILED, str(logs / "risk.prof"), "consumer")
    with (logs / "risk-consumer.log").open("ab") as out:
        return subprocess.Popen(
            [sys.executable, *run],
            cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip


async def run(args: argparse.Namespace, console: Console) -> tuple[list[Row], list[str]]:
    logs = Path(tempfile.mkdtemp(prefix="bench-risk-consumer-rate-"))
    log = Log()
    broker = TansuBroker(free_port(), log_path=logs / "tansu.log")
    broker.start()
    proc: subprocess.Popen[bytes] | None = None
    per, customers = args.events_per_customer, args.customers
    n = customers * per  # customer_events gives exactly `per` records
    try:
        await ensure_topics(broker.bootstrap, all_topics())
        async with scratch_database(args.database_url, "bench_rcr", _migrate("risk")) as db:
            if not args.rate:
                log(f"publishing {customers} customers x {per} records to {TOPIC}")
                n = await produce(broker.bootstrap, 0, customers, per, args.seed, log)
            log(f"starting the risk consumer (logs in {logs})")
            proc = start_consumer(db, broker.bootstrap, logs, args.profile)
            if not args.rate:
                w = await watch(db, n, args.timeout, proc.pid)
            else:
                watching: list[asyncio.Task[Watched]] = []

                async def first_applied() -> None:
                    await watch(db, 1, args.timeout, proc.pid)
                    watching.append(asyncio.create_task(watch(db, n, args.timeout, proc.pid)))
                    await asyncio.sleep(0.3)  # watch() has taken its first CPU reading

                log(f"publishing {n} records at {args.rate:.0f}/s")
                await publish_paced(
                    broker.bootstrap, customers, per, args.seed, args.rate, first_applied
                )
                w = await watching[0]
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
        broker.stop()
    shape = f"paced at {args.rate:.0f}/s" if args.rate else "backlog"
    rows = [
        Row(f"records on {TOPIC} ({shape})", str(n)),
        Row(
            f"risk consumer, applied/s ({w.count}/{n} in {w.span:.1f} s, "
            f"{w.transactions} transactions)",
            f"{w.rate:.1f}",
            verdict="PASS" if w.count >= n else "MISS",
        ),
        Row(
            "risk consumer, CPU ms per event (its process; 1000/x = events/s a core)",
            f"{w.cpu_ms:.2f}",
        ),
    ]
    notes = [
        f"{machine()}; load average {os.getloadavg()[0]:.1f} at the end; {now_utc()}",
        f"{customers} customers x {per} invoice.events records (risk_bench's histories); {shape}",
        "CPU of the consumer process from its first inbox row to the last, per inbox row",
    ]
    if args.profile:
        notes.append(f"profile: {logs / 'risk.prof'}")
    return rows, notes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", type=int, default=500)
    parser.add_argument("--events-per-customer", type=int, default=20)
    parser.add_argument("--rate", type=float, default=0.0, help="publish at this rate (0: backlog)")
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument(
        "--database-url",
        default=os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"),
    )
    parser.add_argument("--profile", action="store_true", help="CPU profile: <logs>/risk.prof")
    args = parser.parse_args()
    console = Console()
    rows, notes = asyncio.run(run(args, console))
    print_table(console, "Risk consumer rate (invoice.events → risk)", rows, notes)


if __name__ == "__main__":
    main()
