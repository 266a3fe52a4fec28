"""The dunning benchmark (issue #3): `python -m bench.dunning_bench`.

In one bounded run, on loopback only:
1. a durable embedded PostgreSQL and a Tansu broker of its own (bench/stack.py, without the
   invoice service); duewise_dunning created and migrated (`python -m dunning.cli migrate`);
2. 1,000,000 open invoices across 100,000 customers seeded by COPY into the projections and
   scheduled_step, rows from the service's own `plan()` (bench/dunning_seed.py), a sample
   checked against `plan()`; ANALYZE;
3. the service's `Scheduler.run_once` in-process, back to back with the settable clock frozen
   at the bench instant, until every step due is emitted (the last look disabled: see the
   notes); then 20 idle passes;
4. the real consumer (`python -m dunning.cli consumer`) and PaymentReceived CloudEvents
   produced straight to invoice.events at 200/s: produce -> the invoice's pending steps
   cancelled, p50/p99;
5. a table, also written as Markdown to bench/results/dunning-latest.md.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import random
import resource
import statistics
import sys
import time
from pathlib import Path

import asyncpg
from duewise_dev.postgres import database_url, ensure_database
from duewise_events.catalogue import AllocationSnapshot, PaymentReceived
from duewise_events.envelope import Envelope
from duewise_events.kafka import make_producer
from rich.console import Console

from bench import dunning_seed
from bench.cpu import CpuMeter, share
from bench.report import Row, machine, markdown, now_utc, print_table, verdict
from bench.runner import run_bench
from bench.stack import PARTITIONS, TOPIC, BenchSetupError, Log, Stack, _stop_process, make_work_dir

RESULTS = Path(__file__).parent / "results" / "dunning-latest.md"
PASS_TARGET_S = 10.0
IDLE_TARGET_MS = 5.0
CANCEL_P99_TARGET_MS = 500.0
DATABASE = "duewise_dunning"


def _args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m bench.dunning_bench", description="The dunning service benchmark."
    )
    p.add_argument("--customers", type=int, default=100_000)
    p.add_argument("--invoices", type=int, default=1_000_000)
    p.add_argument(
        "--span-days",
        type=int,
        default=140,
        help="due dates spread over this many days (7 x invoices / span due today)",
    )
    p.add_argument("--at", type=dt.datetime.fromisoformat, default=dunning_seed.DEFAULT_AT,
                   help="the settable clock's instant (aware ISO)")  # fmt: skip
    p.add_argument("--batch", type=int, default=500, help="Scheduler batch (DUNNING_BATCH)")
    p.add_argument("--max-pass-seconds", type=float, default=660.0,
                   help="stop the due pass after this long and report what it did")  # fmt: skip
    p.add_argument("--idle-passes", type=int, default=20)
    p.add_argument("--rate", type=float, default=200.0, help="payments/s")
    p.add_argument("--duration", type=float, default=20.0, help="payment load seconds")
    p.add_argument("--sample", type=int, default=200, help="invoices polled at 20 ms")
    p.add_argument("--max-minutes", type=float, default=30.0, help="hard bound on the run")
    p.add_argument("--keep", action="store_true", help="keep the temp dir (data, logs)")
    return p.parse_args(argv)


def _pct(xs: list[float], q: float) -> float:
    if not xs:
        return float("nan")
    s = sorted(xs)
    return s[min(len(s) - 1, max(0, round(q / 100 * len(s) + 0.5) - 1))]


def _self_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


# --- the scheduler ----------------------------------------------------------------------


class PassOutcome:
    def __init__(self) -> None:
        self.seconds = 0.0
        self.calls = 0
        self.claimed = self.emitted = self.cancelled = self.skipped = self.deferred = 0
        self.notices = 0
        self.capped = False
        self.left_due = 0
        self.events: dict[str, int] = {}
        self.dup_notice_customers = 0
        self.skipped_dup = 0
        self.call_ms: list[float] = []
        self.cpu: dict[str, float] = {}
        self.idle_ms: list[float] = []
        self.idle_plan = ""
        self.idle_parts: dict[str, float] = {}
        self.idle_at: dt.datetime | None = None


async def _scheduler_phase(
    args: argparse.Namespace, url: str, meter: CpuMeter, log: Log
) -> PassOutcome:
    from duewise_service.db import make_engine, make_sessionmaker
    from dunning.clock import Clock
    from dunning.config import Settings
    from dunning.scheduler import _PICK, CLAIM_LOCK_NS, Scheduler

    settings = Settings(database_url=url)
    engine = make_engine(settings.sqlalchemy_url, pool_size=2)  # as `dunning.cli scheduler`
    clock = Clock()
    clock.set(args.at, freeze=True)
    worker = Scheduler(make_sessionmaker(engine), clock=clock, last_look=None, batch=args.batch)
    out = PassOutcome()
    try:
        clock.set(args.at - dt.timedelta(days=400), freeze=True)
        await worker.run_once()  # nothing due then: warms the pool, imports, statement cache
        clock.set(args.at, freeze=True)
        conn = await asyncpg.connect(url)
        try:
            before = await conn.fetchval("SELECT coalesce(max(id), 0) FROM outbox")
        finally:
            await conn.close()
        log(f"due pass: Scheduler.run_once back to back (batch {args.batch}), clock frozen at "
            f"{args.at.isoformat()}")  # fmt: skip
        meter.start()
        cpu0 = _self_cpu()
        t0 = time.perf_counter()
        next_log = t0 + 10
        while True:
            t1 = time.perf_counter()
            r = await worker.run_once()
            out.call_ms.append((time.perf_counter() - t1) * 1000)
            out.calls += 1
            out.claimed += r.claimed
            out.emitted += r.emitted
            out.cancelled += r.cancelled
            out.skipped += r.skipped
            out.deferred += r.deferred
            out.notices += len(r.notices)
            if r.claimed == 0:
                break
            now = time.perf_counter()
            if now - t0 > args.max_pass_seconds:
                out.capped = True
                break
            if now > next_log:
                log(f"  {now - t0:.0f}s: {out.emitted:,} emitted, {out.notices:,} notices")
                next_log = now + 10
        out.seconds = time.perf_counter() - t0
        out.cpu = meter.stop()
        out.cpu["bench (scheduler)"] = _self_cpu() - cpu0
        conn = await asyncpg.connect(url)
        try:
            out.left_due = await conn.fetchval(
                "SELECT count(*) FROM scheduled_step WHERE status IN ('pending', 'claimed') "
                "AND send_at <= $1",
                args.at,
            )
            out.events = {
                r["type"]: r["n"]
                for r in await conn.fetch(
                    "SELECT type, count(*) AS n FROM outbox WHERE id > $1 GROUP BY type", before
                )
            }
            out.dup_notice_customers = await conn.fetchval(
                "SELECT count(*) FROM (SELECT customer_id, local_date FROM notice "
                "GROUP BY 1, 2 HAVING count(*) > 1) d"
            )
            out.skipped_dup = await conn.fetchval(
                "SELECT count(*) FROM scheduled_step WHERE note = 'notice already sent today'"
            )
            # The idle pass: nothing due any more at the same instant, or (when the due pass
            # was capped) just before the earliest step still pending is due.
            if out.left_due:
                first = await conn.fetchval(
                    "SELECT min(send_at) FROM scheduled_step WHERE status = 'pending'"
                )
                out.idle_at = first - dt.timedelta(microseconds=1)
                clock.set(out.idle_at, freeze=True)
            log(f"idle passes: {args.idle_passes} x run_once with nothing due")
            for _ in range(args.idle_passes):
                t1 = time.perf_counter()
                r = await worker.run_once()
                out.idle_ms.append((time.perf_counter() - t1) * 1000)
                if r.claimed:
                    log(f"  an idle pass claimed {r.claimed} rows")
            for name, fn in (
                ("settle_promises", worker.settle_promises),
                ("lift_expired_pauses", worker.lift_expired_pauses),
                ("claim", worker.claim),
            ):
                times = []
                for _ in range(5):
                    t1 = time.perf_counter()
                    await fn(clock.now())
                    times.append((time.perf_counter() - t1) * 1000)
                out.idle_parts[name] = statistics.median(times)
            async with conn.transaction():
                pick = (
                    str(_PICK.text)
                    .replace(":now", "$1")
                    .replace(":scan", "$2")
                    .replace(":ns", "$4")
                    .replace(":n", "$3")
                )
                plan = await conn.fetch(
                    "EXPLAIN (ANALYZE, BUFFERS) " + pick,
                    clock.now(),
                    args.batch * 4,
                    args.batch,
                    CLAIM_LOCK_NS,
                )
                out.idle_plan = "\n".join(r[0] for r in plan)
                raise _Rollback
        except _Rollback:
            pass
        finally:
            await conn.close()
    finally:
        await engine.dispose()
    return out


class _Rollback(Exception):
    pass


# --- payments -> cancelled ----------------------------------------------------------------


class PaymentOutcome:
    def __init__(self) -> None:
        self.sent = 0
        self.achieved_rate = 0.0
        self.handler_ms: list[float] = []  # produce -> scheduled_step.updated_at (all)
        self.visible_ms: list[float] = []  # produce -> seen cancelled by the 20 ms poller
        self.ack_ms: list[float] = []
        self.not_cancelled = 0
        self.consumer_ready_s = 0.0
        self.cpu: dict[str, float] = {}
        self.wall = 0.0


def _payment(inv: tuple[str, str, int, str, dt.date], n: int, day: dt.date) -> PaymentReceived:
    iid, cid, total, currency, due = inv
    return PaymentReceived(
        customer_id=cid, payment_id=f"pay_bench_{n:07d}", amount=total, currency=currency,
        method="wire", received_at=day,
        allocations=[AllocationSnapshot(
            invoice_id=iid, amount=total, invoice_balance=0, invoice_status="paid", due_date=due,
        )],
    )  # fmt: skip


async def _pending(conn: asyncpg.Connection, ids: list[str]) -> set[str]:
    rows = await conn.fetch(
        "SELECT DISTINCT invoice_id FROM scheduled_step WHERE invoice_id = ANY($1::text[]) "
        "AND status IN ('pending', 'claimed')",
        ids,
    )
    return {r[0] for r in rows}


async def _payments_phase(
    args: argparse.Namespace,
    stack: Stack,
    url: str,
    seeded: dunning_seed.Seeded,
    meter_roots: dict[str, int | None],
    log: Log,
) -> PaymentOutcome:
    out = PaymentOutcome()
    env = {
        **os.environ,
        "DUNNING_DATABASE_URL": url,
        "KAFKA_BOOTSTRAP_SERVERS": stack.bootstrap,
        "DUNNING_CLOCK": args.at.isoformat(),
        "PYTHONUNBUFFERED": "1",
    }
    log_path = stack.log_dir / "dunning-consumer.log"
    with log_path.open("ab") as f:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "dunning.cli", "consumer", env=env,
            stdin=asyncio.subprocess.DEVNULL, stdout=f, stderr=f, process_group=0,
        )  # fmt: skip
    invoices = list(seeded.future_invoices)
    random.Random(3).shuffle(invoices)
    n = int(args.rate * args.duration)
    warm, main = invoices[:20], invoices[20 : 20 + n]
    if len(main) < n:
        raise BenchSetupError(f"only {len(main)} invoices with every step pending; need {n}")
    day = args.at.date()
    producer = make_producer(stack.bootstrap)
    await producer.start()
    conn = await asyncpg.connect(url)
    try:
        log("payments: dunning consumer started; warm-up (group join) with 20 payments")
        t0 = time.perf_counter()
        for i, inv in enumerate(warm):
            e = Envelope.wrap(_payment(inv, i, day), source="duewise/invoice")
            await producer.send_and_wait(TOPIC, e.body(), key=e.key.encode(), headers=e.headers())
        ids = [w[0] for w in warm]
        while await _pending(conn, ids):
            if proc.returncode is not None:
                raise BenchSetupError(f"dunning consumer exited {proc.returncode}; {log_path}")
            if time.perf_counter() - t0 > 120:
                raise BenchSetupError(f"warm-up payments not applied in 120 s; {log_path}")
            await asyncio.sleep(0.05)
        out.consumer_ready_s = time.perf_counter() - t0
        log(f"  consumer applying after {out.consumer_ready_s:.1f}s; now {args.rate:.0f} "
            f"payments/s for {args.duration:.0f}s")  # fmt: skip

        step = max(1, n // args.sample)
        sample = {main[i][0] for i in range(0, n, step)}
        produced: dict[str, float] = {}  # invoice id -> wall-clock produce time
        open_sample: set[str] = set()
        done = asyncio.Event()

        async def poller() -> None:
            pconn = await asyncpg.connect(url)
            try:
                while not (done.is_set() and not open_sample):
                    if open_sample:
                        ids_ = list(open_sample)
                        still = await _pending(pconn, ids_)
                        seen = time.time()
                        for iid in ids_:
                            if iid not in still:
                                out.visible_ms.append((seen - produced[iid]) * 1000)
                                open_sample.discard(iid)
                    await asyncio.sleep(0.02)
            finally:
                await pconn.close()

        poll_task = asyncio.create_task(poller())
        acks: list[asyncio.Future[object]] = []
        meter = CpuMeter({**meter_roots, "consumer": proc.pid})
        meter.start()
        cpu0 = _self_cpu()
        start = time.perf_counter()
        for i, inv in enumerate(main):
            delay = start + i / args.rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            e = Envelope.wrap(_payment(inv, 100 + i, day), source="duewise/invoice")
            ts = time.time()
            produced[inv[0]] = ts
            if inv[0] in sample:
                open_sample.add(inv[0])
            fut = await producer.send(TOPIC, e.body(), key=e.key.encode(), headers=e.headers())
            fut.add_done_callback(lambda _f, ts=ts: out.ack_ms.append((time.time() - ts) * 1000))
            acks.append(fut)
        out.achieved_rate = n / (time.perf_counter() - start)
        await asyncio.gather(*acks)
        out.sent = n
        done.set()
        ids = [m[0] for m in main]
        deadline = time.perf_counter() + 120
        left = await _pending(conn, ids)
        while left and time.perf_counter() < deadline:
            await asyncio.sleep(0.1)
            left = await _pending(conn, list(left))
        out.wall = time.perf_counter() - start
        out.cpu = meter.stop()
        out.cpu["bench (producer, poller)"] = _self_cpu() - cpu0
        out.not_cancelled = len(left)
        open_sample.clear()
        await poll_task
        rows = await conn.fetch(
            "SELECT invoice_id, max(updated_at) AS at FROM scheduled_step "
            "WHERE invoice_id = ANY($1::text[]) AND status = 'cancelled' GROUP BY invoice_id",
            ids,
        )
        for r in rows:
            out.handler_ms.append((r["at"].timestamp() - produced[r["invoice_id"]]) * 1000)
    finally:
        await conn.close()
        await producer.stop()
        await _stop_process(proc)
    return out


# --- the run ------------------------------------------------------------------------------


async def _migrate(stack: Stack, url: str, log: Log) -> None:
    log(f"migrating {DATABASE} (python -m dunning.cli migrate)")
    env = {**os.environ, "DUNNING_DATABASE_URL": url, "PYTHONUNBUFFERED": "1"}
    log_path = stack.log_dir / "dunning-migrate.log"
    with log_path.open("ab") as f:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "dunning.cli", "migrate", env=env,
            stdin=asyncio.subprocess.DEVNULL, stdout=f, stderr=f,
        )  # fmt: skip
    if await asyncio.wait_for(proc.wait(), 120) != 0:
        raise BenchSetupError(f"dunning migrate failed:\n{log_path.read_text()[-2000:]}")


async def run(args: argparse.Namespace, console: Console) -> int:
    log = Log()
    stack = Stack(work_dir=make_work_dir(), keep_work_dir=args.keep, invoice_services=False)
    rows: list[Row] = []
    notes: list[str] = []
    title = f"duewise dunning bench, {now_utc()}"
    load_before = os.getloadavg()
    try:
        async with asyncio.timeout(args.max_minutes * 60):
            if os.environ.get("DATABASE_URL"):
                raise BenchSetupError("the dunning bench needs its own embedded PostgreSQL")
            await stack.start(log=log)
            log(stack.database_note)
            await ensure_database(stack.server_url, DATABASE)
            url = database_url(stack.server_url, DATABASE)
            await _migrate(stack, url, log)
            roots = {"postgres": stack.postgres_pid(), "tansu": stack.broker_pid()}

            seeded = await dunning_seed.seed(
                url, customers=args.customers, invoices=args.invoices, at=args.at,
                span_days=args.span_days, log=log,
            )  # fmt: skip
            log(f"seeded in {seeded.seconds:.0f}s ({seeded.copy_seconds:.0f}s in COPY): "
                f"{seeded.steps:,} steps, {seeded.due_now:,} due now for "
                f"{seeded.due_customers:,} customers; verified {seeded.verified} invoices "
                f"against plan(), {len(seeded.mismatches)} mismatches")  # fmt: skip
            if seeded.mismatches:
                raise BenchSetupError(f"seeded rows differ from plan(): {seeded.mismatches[:5]}")

            sched = await _scheduler_phase(args, url, CpuMeter(roots), log)
            log(f"  {sched.seconds:.2f}s: {sched.emitted:,} emitted in {sched.notices:,} "
                f"notices over {sched.calls} run_once calls; idle median "
                f"{statistics.median(sched.idle_ms):.2f} ms")  # fmt: skip

            pay = await _payments_phase(args, stack, url, seeded, roots, log)
            log(f"  produce -> cancelled (visible) p50 {_pct(pay.visible_ms, 50):.0f} ms, "
                f"p99 {_pct(pay.visible_ms, 99):.0f} ms")  # fmt: skip

        rows += _rows(args, seeded, sched, pay)
        notes += _notes(args, stack, seeded, sched, pay, load_before)
    except BaseException:
        stack.keep_work_dir = True
        print(f"bench failed; data and logs kept in {stack.work_dir}", file=sys.stderr)
        raise
    finally:
        log("stopping broker and PostgreSQL")
        await stack.stop()

    print_table(console, title, rows, notes)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    text = markdown(title, rows, notes)
    if sched.idle_plan:
        text += "\nThe claim query with nothing due (EXPLAIN ANALYZE):\n\n```\n"
        text += sched.idle_plan + "\n```\n"
    RESULTS.write_text(text)
    shown = RESULTS.relative_to(Path.cwd()) if RESULTS.is_relative_to(Path.cwd()) else RESULTS
    console.print(f"\nwritten to {shown}")
    return 0


def _rows(
    args: argparse.Namespace,
    seeded: dunning_seed.Seeded,
    s: PassOutcome,
    p: PaymentOutcome,
) -> list[Row]:
    idle = statistics.median(s.idle_ms) if s.idle_ms else float("nan")
    reminders = s.events.get("reminder.due.v1", 0)
    fees = s.events.get("fee.assessed.v1", 0)
    complete = not s.capped and s.left_due == 0
    pass_value = f"{s.seconds:.2f} s" if complete else (
        f"> {s.seconds:.0f} s (capped: {s.emitted:,} of {seeded.due_now:,} emitted)"
    )  # fmt: skip
    rate = s.emitted / s.seconds if s.seconds else 0.0
    est = seeded.due_now / rate if rate else float("inf")
    vis99, all99 = _pct(p.visible_ms, 99), _pct(p.handler_ms, 99)
    return [
        Row("seed: 1M invoices / 100k customers by COPY (not a target)",
            f"{seeded.seconds:.0f} s", target=f"{seeded.steps:,} step rows; "
            f"COPY {seeded.copy_seconds:.0f} s, ANALYZE {seeded.analyze_seconds:.0f} s"),
        Row(f"due pass: every step due today emitted ({seeded.due_now:,} steps, "
            f"{seeded.due_customers:,} customers)", pass_value,
            target=f"< {PASS_TARGET_S:.0f} s", verdict=verdict(complete and
                                                               s.seconds < PASS_TARGET_S)),
        Row("  steps emitted / s (est. full pass)", f"{rate:,.0f} /s",
            target=f"est. {est:.0f} s for all" if not complete else ""),
        Row("  reminder.due.v1 events (one per customer per day)", f"{reminders:,}",
            target=f"{seeded.due_customers:,} customers due" + ("" if complete else " (capped)"),
            verdict=verdict(reminders == seeded.due_customers) if complete else ""),
        Row("  fee.assessed.v1 events", f"{fees:,}",
            target=f"{seeded.due_fee_steps:,} fee steps due" + ("" if complete else " (capped)"),
            verdict=verdict(fees == seeded.due_fee_steps) if complete else ""),
        Row("  other outcomes", f"{s.skipped:,} skipped, {s.cancelled:,} cancelled, "
            f"{s.deferred:,} deferred", target=f"{s.dup_notice_customers:,} customer-days with "
            f">1 notice; {s.skipped_dup:,} steps skipped as 'notice already sent today'",
            verdict=verdict(s.dup_notice_customers == 0 and s.skipped_dup == 0)),
        Row(f"idle pass (nothing due): median of {len(s.idle_ms)}"
            + (f" (at {s.idle_at.isoformat()}: due pass capped)" if s.idle_at else ""),
            f"{idle:.2f} ms",
            target=f"< {IDLE_TARGET_MS:.0f} ms", verdict=verdict(idle < IDLE_TARGET_MS)),
        Row("  idle pass p90 / max", f"{_pct(s.idle_ms, 90):.2f} / {max(s.idle_ms):.2f} ms"),
        Row("  idle parts (medians of 5): " + ", ".join(s.idle_parts),
            " / ".join(f"{v:.2f}" for v in s.idle_parts.values()) + " ms"),
        Row(f"payment -> steps cancelled @ {args.rate:.0f}/s, visible (sample of "
            f"{len(p.visible_ms)}, 20 ms polls): p50 / p99",
            f"{_pct(p.visible_ms, 50):.0f} / {vis99:.0f} ms",
            target=f"p99 < {CANCEL_P99_TARGET_MS:.0f} ms",
            verdict=verdict(vis99 < CANCEL_P99_TARGET_MS and p.not_cancelled == 0)),
        Row(f"  all {len(p.handler_ms):,} payments, produce -> row updated_at: p50 / p99 / max",
            f"{_pct(p.handler_ms, 50):.0f} / {all99:.0f} / {max(p.handler_ms or [0]):.0f} ms",
            target=f"{p.not_cancelled} not cancelled after 120 s",
            verdict=verdict(all99 < CANCEL_P99_TARGET_MS and p.not_cancelled == 0)),
        Row("  produce -> broker ack p50 / p99",
            f"{_pct(p.ack_ms, 50):.0f} / {_pct(p.ack_ms, 99):.0f} ms",
            target=f"achieved {p.achieved_rate:.0f} payments/s"),
    ]  # fmt: skip


def _notes(
    args: argparse.Namespace,
    stack: Stack,
    seeded: dunning_seed.Seeded,
    s: PassOutcome,
    p: PaymentOutcome,
    load_before: tuple[float, float, float],
) -> list[str]:
    zones = ", ".join(z for z, _, _ in dunning_seed.ZONES)
    calls = sorted(s.call_ms)
    return [
        f"Machine: {machine()}; load average (1/5/15 min) {load_before[0]:.2f}/"
        f"{load_before[1]:.2f}/{load_before[2]:.2f} before the run, "
        f"{'/'.join(f'{x:.2f}' for x in os.getloadavg())} after.",
        f"{stack.database_note}; broker: {stack.broker_origin} ({stack.bootstrap}), topic "
        f"{TOPIC} with {PARTITIONS} partitions. All traffic over loopback.",
        f"Data: {seeded.customers:,} customers round-robin over {zones} (country holidays "
        f"apply); {seeded.invoices:,} open invoices (issue = due - 30 days, due dates uniform "
        f"over {args.span_days} days, mostly past), {seeded.steps:,} scheduled_step rows from "
        f"the service's plan() and the default policy ({seeded.emitted_before:,} of them on an "
        "earlier local day, seeded as emitted with the customer's stage they imply; the rest "
        f"pending). {seeded.verified} random invoices read back and compared with plan(): "
        f"{len(seeded.mismatches)} mismatches. Clock frozen at {args.at.isoformat()} "
        "(a Wednesday, inside every zone's 09:00-17:00 send window).",
        "Due pass: the service's Scheduler (dunning.scheduler) in the bench process with the "
        f"CLI's engine (pool 2), batch {args.batch}, run_once called back to back until it "
        f"claims nothing ({s.calls} calls; per call p50 {_pct(calls, 50):.0f} ms, max "
        f"{max(calls or [0]):.0f} ms), as the service's own Scheduler.run does while a "
        "pass claims a full batch. Last look DISABLED (last_look=None): in service it is one "
        "HTTP GET per customer with due steps, 8 at a time, i.e. "
        f"{seeded.due_customers:,} requests to the invoice API in this pass, not included.",
        f"CPU during the due pass, in cores (of 2): {share(s.cpu, s.seconds or 1)}.",
        "Payments: PaymentReceived CloudEvents (Envelope.wrap, full payment, status paid) "
        f"produced with aiokafka (acks=all) straight to {TOPIC} keyed by customer id, "
        f"open loop at {args.rate:.0f}/s for {args.duration:.0f} s, to invoices whose 7 steps "
        "are all pending; this isolates the dunning path (no invoice API, outbox or relay in "
        "front). Consumer: `python -m dunning.cli consumer` (a subprocess); it first took "
        f"{p.consumer_ready_s:.1f} s to join and apply 20 warm-up payments. 'Visible' = first "
        "20 ms poll of a sample that sees no pending/claimed row for the invoice (committed); "
        "'updated_at' = the cancelled rows' updated_at (set in the consumer just before "
        "commit) minus the produce call's wall time, for every payment.",
        f"CPU during the payment run ({p.wall:.1f} s to the last cancellation), in cores: "
        f"{share(p.cpu, p.wall or 1)}.",
        "Not measured: the variant through POST /v1/payments + the invoice relay.",
    ]


def main(argv: list[str] | None = None) -> int:
    return run_bench(run, _args(argv))


if __name__ == "__main__":
    sys.exit(main())
