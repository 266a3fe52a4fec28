"""The risk benchmark (issue #5): `python -m bench.risk_bench`.

In one bounded run, on loopback only:
1. an embedded PostgreSQL and a Tansu broker (bench/stack.py, without the invoice service);
   duewise_risk created and migrated (`python -m risk.cli migrate`);
2. live: the invoice.events records of `--live-customers` customers (a mix of invoices
   issued, paid in full, paid in parts, and paid then reversed then paid again) produced to
   the broker; then, over the same records, (a) a plain aiokafka consumer that only reads
   them (the raw consume rate) and (b) the service's consumer (`python -m risk.cli consumer`,
   the real EventConsumer: one transaction per event with its inbox row, the profile folded,
   signals reviewed, the score recomputed). Rates are steady-state: first to last record;
3. rebuild: the rest of `--customers` produced to the same topic (`--events-per-customer`
   each, 2,000,000 by default), then `python -m risk.cli rebuild` timed from the start of
   the process to its exit; the live customers' rebuilt scores compared with the live ones;
4. a table, also written as Markdown to bench/results/risk-latest.md.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import random
import resource
import secrets
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import asyncpg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from duewise_dev.broker import ensure_topics
from duewise_dev.postgres import database_url, ensure_database
from duewise_events.catalogue import DUNNING_EVENTS, NOTIFY_EVENTS, dead_letter_topic
from duewise_events.envelope import Envelope
from rich.console import Console

from bench.report import Row, machine, markdown, now_utc, pct, print_table, verdict
from bench.runner import run_bench
from bench.stack import PARTITIONS, TOPIC, BenchSetupError, Log, Stack, _stop_process, make_work_dir

RESULTS = Path(__file__).parent / "results" / "risk-latest.md"
DATABASE = "duewise_risk"
LIVE_SHARE_TARGET = 0.25
REBUILD_TARGET_S = 180.0
START = dt.date(2024, 1, 1)
METHODS = ("check", "ach", "wire", "card", "sepa")


class _Done(Exception):
    """The phases asked for are done."""


def _args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.risk_bench",
                                description="The risk service benchmark.")  # fmt: skip
    p.add_argument("--live-customers", type=int, default=500)
    p.add_argument("--customers", type=int, default=100_000, help="customers in the rebuild")
    p.add_argument("--events-per-customer", type=int, default=20)
    p.add_argument("--workers", type=int, default=0, help="rebuild workers (0: one per core)")
    p.add_argument("--seed", type=int, default=5)
    p.add_argument("--skip-rebuild", action="store_true", help="only the live phase")
    p.add_argument("--max-minutes", type=float, default=40.0, help="hard bound on the run")
    p.add_argument("--keep", action="store_true", help="keep the temp dir (data, logs)")
    return p.parse_args(argv)


# --- the records ------------------------------------------------------------------------


def _alloc(inv: dict[str, Any], amount: int, balance: int) -> dict[str, Any]:
    return {"invoice_id": inv["invoice_id"], "amount": amount, "invoice_balance": balance,
            "invoice_status": "paid" if balance == 0 else "partially_paid",
            "due_date": inv["due_date"]}  # fmt: skip


def customer_events(cid: str, n: int, rng: random.Random) -> list[tuple[str, dict[str, Any]]]:
    """`n` invoice.events facts of one customer, in date order: (type, body)."""
    method = rng.choice(METHODS)
    out: list[tuple[dt.date, int, str, dict[str, Any]]] = []
    seq = 0

    def add(on: dt.date, type_: str, body: dict[str, Any]) -> None:
        nonlocal seq
        seq += 1
        out.append((on, seq, type_, {"customer_id": cid, **body}))

    created = {"name": f"Customer {cid}", "currency": "EUR", "timezone": "UTC",
               "country": "DE", "locale": "de-DE", "payment_terms_days": 30,
               "credit_limit": rng.choice([None, 5_000_00, 20_000_00])}  # fmt: skip
    add(START - dt.timedelta(days=1), "customer.created.v1", created)
    k = 0
    while len(out) < n:
        issued = START + dt.timedelta(days=30 * k + rng.randrange(5))
        due = issued + dt.timedelta(days=30)
        total = rng.randrange(100_00, 5_000_00)
        inv = {"invoice_id": f"{cid}-i{k}", "number": f"{cid}-{k:04d}",
               "issue_date": issued.isoformat(), "due_date": due.isoformat(),
               "currency": "EUR", "total": total, "balance": total}  # fmt: skip
        add(issued, "invoice.issued.v1", inv)
        late = rng.choice((-5, -2, 0, 0, 3, 10, 25))
        pay_on = due + dt.timedelta(days=late)
        roll = rng.random()
        pid = f"{cid}-p{k}"
        if roll < 0.55:  # paid in full
            add(
                pay_on,
                "payment.received.v1",
                _payment(pid, total, method, pay_on, [_alloc(inv, total, 0)]),
            )
        elif roll < 0.75:  # paid in two parts
            half = total // 2
            add(
                pay_on,
                "payment.received.v1",
                _payment(pid, half, method, pay_on, [_alloc(inv, half, total - half)]),
            )
            later = pay_on + dt.timedelta(days=14)
            add(
                later,
                "payment.received.v1",
                _payment(pid + "b", total - half, method, later, [_alloc(inv, total - half, 0)]),
            )
        elif roll < 0.85:  # paid, reversed (bounced), paid again by wire
            add(
                pay_on,
                "payment.received.v1",
                _payment(pid, total, method, pay_on, [_alloc(inv, total, 0)]),
            )
            back = pay_on + dt.timedelta(days=5)
            reopened = {**_alloc(inv, total, total), "invoice_status": "open"}
            add(
                back,
                "payment.reversed.v1",
                {
                    "payment_id": pid,
                    "amount": total,
                    "currency": "EUR",
                    "method": method,
                    "reason": "bounced",
                    "allocations": [reopened],
                    "reversed_at": f"{back.isoformat()}T12:00:00+00:00",
                },
            )
            again = back + dt.timedelta(days=7)
            add(
                again,
                "payment.received.v1",
                _payment(pid + "r", total, "wire", again, [_alloc(inv, total, 0)]),
            )
        # else: left open
        k += 1
    out.sort(key=lambda e: (e[0], e[1]))
    return [(t, b) for _, _, t, b in out[:n]]


def _payment(pid: str, amount: int, method: str, on: dt.date, allocs: list[dict[str, Any]]
             ) -> dict[str, Any]:  # fmt: skip
    return {"payment_id": pid, "amount": amount, "currency": "EUR", "method": method,
            "received_at": on.isoformat(), "allocations": allocs}  # fmt: skip


async def produce(bootstrap: str, first: int, count: int, per: int, seed: int, log: Log) -> int:
    """Customers first..first+count-1 to invoice.events; returns the records sent."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=20,
                                max_batch_size=512 * 1024, request_timeout_ms=60_000)  # fmt: skip
    await producer.start()
    sent = 0
    pending: list[asyncio.Future[Any]] = []
    now = dt.datetime.now(dt.UTC)
    try:
        for c in range(first, first + count):
            rng = random.Random(seed * 1_000_003 + c)
            cid = f"cus_{c:07d}"
            for type_, body in customer_events(cid, per, rng):
                env = Envelope(id=str(uuid.uuid4()), source="duewise/invoice", type=type_,
                               time=now, key=cid, data=body)  # fmt: skip
                pending.append(await producer.send(TOPIC, value=env.body(), key=cid.encode(),
                                                   headers=env.headers()))  # fmt: skip
                sent += 1
            if len(pending) >= 20_000:
                await asyncio.gather(*pending)
                pending.clear()
                if c % 10_000 == 0:
                    log(f"  produced {sent:,} records")
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return sent


# --- the measurements -------------------------------------------------------------------


async def raw_consume(bootstrap: str, n: int) -> tuple[float, float]:
    """A plain aiokafka consumer group reading the first `n` records: (records/s, wall s)."""
    consumer = AIOKafkaConsumer(TOPIC, bootstrap_servers=bootstrap,
                                group_id=f"bench-raw-{secrets.token_hex(4)}",
                                enable_auto_commit=False, auto_offset_reset="earliest")  # fmt: skip
    await consumer.start()
    got = 0
    first = last = 0.0
    try:
        while got < n:
            batch = await consumer.getmany(timeout_ms=500, max_records=500)
            for records in batch.values():
                if records and not first:
                    first = time.perf_counter()
                got += len(records)
            if batch:
                last = time.perf_counter()
    finally:
        await consumer.stop()
    return (got - 1) / (last - first), last - first


async def live_consume(url: str, env: dict[str, str], n: int, log_dir: Path, log: Log
                       ) -> tuple[float, float, int, float]:  # fmt: skip
    """`risk.cli consumer` over the same records: (events/s, wall s, profiles, consumer CPU s
    from its start to the last event applied)."""
    out = (log_dir / "risk-consumer.log").open("ab")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "risk.cli", "consumer", env=env, stdin=asyncio.subprocess.DEVNULL,
        stdout=out, stderr=out, process_group=0,
    )  # fmt: skip
    conn = await asyncpg.connect(url)
    try:
        done = 0
        next_log = time.monotonic() + 10
        while done < n:
            if proc.returncode is not None:
                raise BenchSetupError(f"risk consumer exited {proc.returncode}")
            await asyncio.sleep(0.5)
            done = await conn.fetchval("SELECT count(*) FROM inbox")
            if time.monotonic() > next_log:
                log(f"  consumer: {done:,} of {n:,} applied")
                next_log += 10
        cpu = _proc_cpu(proc.pid)
        span = await conn.fetchrow("SELECT min(processed_at), max(processed_at) FROM inbox")
        assert span is not None  # an aggregate always answers one row
        first, last = span
        wall = (last - first).total_seconds()
        profiles = await conn.fetchval(
            "SELECT count(*) FROM customer_profile WHERE score IS NOT NULL"
        )
        return (n - 1) / wall, wall, profiles, cpu
    finally:
        await conn.close()
        await _stop_process(proc)
        out.close()


async def scores(url: str) -> dict[str, tuple[int, str]]:
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch("SELECT customer_id, score, band FROM customer_profile")
        return {r["customer_id"]: (r["score"], r["band"]) for r in rows}
    finally:
        await conn.close()


def _proc_cpu(pid: int) -> float:
    """CPU seconds a running process has used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _children_cpu() -> float:
    """CPU seconds of finished child processes (and theirs: the rebuild's workers)."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


async def run_rebuild(env: dict[str, str], workers: int, log_dir: Path) -> tuple[float, str, float]:
    """(wall s, the command's summary line, CPU s of the command and its workers)."""
    cpu0 = _children_cpu()
    t0 = time.perf_counter()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "risk.cli", "rebuild", "--no-commit-offsets",
        "--workers", str(workers), env=env, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, process_group=0,
    )  # fmt: skip
    output, _ = await proc.communicate()
    wall = time.perf_counter() - t0
    (log_dir / "risk-rebuild.log").write_bytes(output)
    if proc.returncode != 0:
        raise BenchSetupError(f"rebuild exited {proc.returncode}:\n{output.decode()[-2000:]}")
    return wall, output.decode().strip().splitlines()[-1], _children_cpu() - cpu0


# --- the run ----------------------------------------------------------------------------


async def run(args: argparse.Namespace, console: Console) -> int:
    log = Log()
    stack = Stack(work_dir=make_work_dir(), keep_work_dir=args.keep, invoice_services=False)
    rows: list[Row] = []
    notes: list[str] = []
    title = f"duewise risk bench, {now_utc()}"
    load_before = os.getloadavg()
    workers = args.workers or len(os.sched_getaffinity(0))
    per = args.events_per_customer
    try:
        async with asyncio.timeout(args.max_minutes * 60):
            await stack.start(log=log)
            log(stack.database_note)
            await ensure_topics(stack.bootstrap, {
                DUNNING_EVENTS: PARTITIONS, NOTIFY_EVENTS: PARTITIONS,
                **{dead_letter_topic(t): PARTITIONS for t in (TOPIC, DUNNING_EVENTS,
                                                               NOTIFY_EVENTS)},
            })  # fmt: skip
            await ensure_database(stack.server_url, DATABASE)
            url = database_url(stack.server_url, DATABASE)
            env = {**os.environ, "RISK_DATABASE_URL": url, "PYTHONUNBUFFERED": "1",
                   "KAFKA_BOOTSTRAP_SERVERS": stack.bootstrap}  # fmt: skip
            log("migrating duewise_risk (python -m risk.cli migrate)")
            mig = await asyncio.create_subprocess_exec(sys.executable, "-m", "risk.cli", "migrate",
                                                       env=env)  # fmt: skip
            if await mig.wait() != 0:
                raise BenchSetupError("risk migrate failed")

            log(f"producing {args.live_customers:,} customers x {per} records")
            n_live = await produce(stack.bootstrap, 0, args.live_customers, per, args.seed, log)
            raw_rate, raw_wall = await raw_consume(stack.bootstrap, n_live)
            log(f"raw aiokafka consume: {raw_rate:,.0f} records/s ({raw_wall:.2f} s)")
            live_rate, live_wall, profiles, live_cpu = await live_consume(url, env, n_live,
                                                                stack.log_dir, log)  # fmt: skip
            log(f"risk consumer: {live_rate:,.0f} events/s ({live_wall:.1f} s), "
                f"{profiles:,} customers scored")  # fmt: skip
            live_scores = await scores(url)
            share_ = live_rate / raw_rate
            rows += [
                Row(f"raw aiokafka consume of the {n_live:,} live records (no work)",
                    f"{raw_rate:,.0f} /s", target=f"{raw_wall:.2f} s first to last"),
                Row("events applied to profiles, scores recomputed (risk.cli consumer)",
                    f"{live_rate:,.0f} /s", ceiling=f"{raw_rate:,.0f} /s", ratio=pct(share_),
                    target=f">= {LIVE_SHARE_TARGET:.0%} of raw",
                    verdict=verdict(share_ >= LIVE_SHARE_TARGET)),
                Row("  consumer process CPU per event (start-up included)",
                    f"{live_cpu / n_live * 1e6:,.0f} µs", target=f"{live_cpu:.1f} CPU s"),
                Row("  customers scored by the live path", f"{profiles:,}",
                    target=f"{args.live_customers:,} customers",
                    verdict=verdict(profiles == args.live_customers)),
            ]  # fmt: skip

            rest = args.customers - args.live_customers
            if args.skip_rebuild:
                raise _Done
            log(f"producing {rest:,} more customers x {per} records for the rebuild")
            t0 = time.perf_counter()
            n_rest = await produce(stack.bootstrap, args.live_customers, rest, per, args.seed, log)
            produce_s = time.perf_counter() - t0
            total = n_live + n_rest
            log(f"  {total:,} records on {TOPIC} ({produce_s:.0f} s to produce); rebuilding "
                f"with {workers} worker(s)")  # fmt: skip
            rebuild_s, summary, rebuild_cpu = await run_rebuild(env, workers, stack.log_dir)
            log(f"rebuild: {rebuild_s:.1f} s ({rebuild_cpu:.0f} CPU s): {summary}")
            rebuilt = await scores(url)
            same = sum(1 for cid, v in live_scores.items() if rebuilt.get(cid) == v)
            rows += [
                Row(f"rebuild {args.customers:,} customers' profiles from {total:,} events "
                    f"(risk.cli rebuild, {workers} workers)", f"{rebuild_s:.1f} s",
                    target=f"< {REBUILD_TARGET_S:.0f} s",
                    verdict=verdict(rebuild_s < REBUILD_TARGET_S
                                    and len(rebuilt) == args.customers)),
                Row("  events folded per second in the rebuild", f"{total / rebuild_s:,.0f} /s",
                    target=summary),
                Row("  CPU of the rebuild process and its workers (PostgreSQL and broker not "
                    "counted)", f"{rebuild_cpu:.0f} CPU s",
                    target=f"{rebuild_cpu / workers:.0f} s per core if the cores were free"),
                Row("  live customers whose rebuilt score equals the live one", f"{same:,}",
                    target=f"{len(live_scores):,}", verdict=verdict(same == len(live_scores))),
                Row(f"  producing the {n_rest:,} rebuild records (setup, not a target)",
                    f"{produce_s:.0f} s"),
            ]  # fmt: skip
            notes += [
                f"Machine: {machine()}; load average (1/5/15 min) {load_before[0]:.2f}/"
                f"{load_before[1]:.2f}/{load_before[2]:.2f} before the run, "
                f"{'/'.join(f'{x:.2f}' for x in os.getloadavg())} after (other work on the "
                "machine shares the 2 cores).",
                f"{stack.database_note}; broker: {stack.broker_origin}, topic {TOPIC} with "
                f"{PARTITIONS} partitions. All traffic over loopback.",
                f"Records: {per} invoice.events per customer (customer.created, then invoices "
                "every ~30 days: 55% paid in full, 20% in two parts, 10% paid, reversed "
                "(bounced) and paid again by wire, 15% left open), CloudEvents built with the "
                "catalogue's field names, keyed by customer id.",
                "Rates are first-to-last: the raw consumer from its first to its last record, "
                "the risk consumer from the first to the last inbox row's processed_at (so "
                "group join and start-up are excluded from both).",
                "The live path is the service's consumer: the shared EventConsumer with each "
                "partition's batch (up to 500 records per poll) applied in one transaction "
                "(inbox rows, every event folded and scored as if alone, the rows written a "
                "batch at a time), 4 partitions at once, a pool of 2 connections "
                "(the CLI's worker_sessions).",
            ]
    except _Done:
        pass
    except BenchSetupError as exc:
        console.print(f"[bold red]bench setup failed:[/] {exc}")
        return 2
    finally:
        await stack.stop()
    print_table(console, title, rows, notes)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(markdown(title, rows, notes))
    shown = RESULTS.relative_to(Path.cwd()) if RESULTS.is_relative_to(Path.cwd()) else RESULTS
    console.print(f"\nwritten to {shown}")
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_bench(run, _args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
