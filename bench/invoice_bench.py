"""The invoice service benchmark: `python -m bench.invoice_bench` (`make bench`).

One run, on one machine, over loopback only, bounded in count and time:

1. its own infrastructure (unless DATABASE_URL / KAFKA_BOOTSTRAP_SERVERS are set): a durable
   embedded PostgreSQL and a Tansu broker on free ports, the invoice API and relay;
2. the raw ceilings: COPY rows/s into that PostgreSQL, acks=all produce msgs/s to that broker;
3. POST /v1/invoices at a fixed 300 req/s (open loop) and at concurrency 16 (closed loop),
   driven by a separate load-generator process (`bench.load`);
4. a bulk CSV import of open invoices, timed until every event is published, then checked
   on the topic by event id;
5. a table (metric, value, ceiling, ratio, target, verdict), also written as Markdown to
   bench/results/latest.md.

`--cpu-per-request N` instead measures only what survives a busy machine: the API process's
CPU ms per POST /v1/invoices and per POST /v1/payments (N of each, closed loop at
`--concurrency`), and prints two lines. To compare two commits, run it from each tree back to
back (e.g. a `git archive` of the older one, its src dirs first on PYTHONPATH).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console

from bench import bulk_import
from bench.ceilings import Ceiling, copy_ceiling, produce_ceiling
from bench.cpu import CpuMeter, share, tree_cpu
from bench.load import Job, Result
from bench.outbox import wait_drained
from bench.report import Row, machine, markdown, now_utc, pct, print_table, verdict
from bench.runner import run_bench
from bench.stack import PARTITIONS, TOPIC, Log, Stack, make_work_dir

RESULTS = Path(__file__).parent / "results" / "latest.md"
P99_TARGET_MS = 25.0
IMPORT_TARGET = 0.15


def _args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m bench.invoice_bench", description="The invoice service benchmark."
    )
    p.add_argument("--rate", type=float, default=300.0, help="open-loop requests/s")
    p.add_argument("--duration", type=float, default=20.0, help="open-loop measured seconds")
    p.add_argument("--warmup", type=float, default=3.0, help="open-loop warm-up seconds")
    p.add_argument("--max-in-flight", type=int, default=64)
    p.add_argument("--concurrency", type=int, default=16, help="closed-loop workers")
    p.add_argument("--closed-duration", type=float, default=10.0)
    p.add_argument("--customers", type=int, default=50)
    p.add_argument("--copy-rows", type=int, default=200_000)
    p.add_argument("--produce-msgs", type=int, default=50_000)
    p.add_argument("--import-rows", type=int, default=20_000)
    p.add_argument("--no-idempotency-key", action="store_true",
                   help="POST without an Idempotency-Key header")  # fmt: skip
    p.add_argument("--skip-import", action="store_true")
    p.add_argument("--import-via", choices=("library", "cli"), default="library",
                   help="import_rows in-process, or the `invoice.cli import` command")  # fmt: skip
    p.add_argument("--max-minutes", type=float, default=20.0, help="hard bound on the run")
    p.add_argument("--keep", action="store_true", help="keep the temp dir (data, logs)")
    p.add_argument("--profile", type=Path, metavar="DIR",
                   help="API and relay under cProfile (slower); .prof files in DIR")  # fmt: skip
    p.add_argument("--cpu-per-request", type=int, metavar="N", default=0,
                   help="only measure the API's CPU ms per POST /v1/invoices and per POST "
                        "/v1/payments: N of each, closed loop at --concurrency")  # fmt: skip
    return p.parse_args(argv)


async def _create_customers(stack: Stack, n: int) -> list[str]:
    """`n` customers through the contract's POST /v1/customers."""
    ids: list[str] = []
    headers = {"Authorization": f"Bearer {stack.admin_token}"}
    async with httpx.AsyncClient(base_url=stack.api_url, headers=headers, timeout=10) as http:
        for i in range(n):
            body = {
                "name": f"Bench Customer {i} GmbH", "external_id": f"BENCH-C-{i}",
                "currency": "EUR", "timezone": "Europe/Berlin", "country": "DE",
                "locale": "de-DE", "payment_terms_days": 30, "credit_limit": 5_000_000_00,
                "contacts": [{"name": "AP desk", "email": f"ap{i}@bench.example",
                              "phone": "+4930123456", "role": "billing"}],
                "invoice_preferences": {"po_required": False, "cc": []},
            }  # fmt: skip
            r = await http.post("/v1/customers", json=body)
            if r.status_code != 201:
                raise RuntimeError(f"POST /v1/customers -> {r.status_code}: {r.text[:500]}")
            ids.append(r.json()["id"])
    return ids


async def _drive(job: Job) -> Result:
    """Run one load job in a separate process (`python -m bench.load`)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.load",
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        limit = job.warmup_s + job.duration_s + job.drain_s + job.timeout_s + 60
        async with asyncio.timeout(limit):
            out, _ = await proc.communicate(json.dumps(asdict(job)).encode())
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    if proc.returncode != 0:
        raise RuntimeError(f"load generator exited {proc.returncode}")
    data: dict[str, Any] = json.loads(out)
    return Result(**data)


def _ms(d: dict[str, float], key: str) -> str:
    return f"{d[key]:.1f} ms" if key in d else "n/a"


def _rate(x: float, unit: str) -> str:
    return f"{x:,.0f} {unit}"


async def run(args: argparse.Namespace, console: Console) -> int:
    log = Log()
    stack = Stack(work_dir=make_work_dir(), keep_work_dir=args.keep)
    if args.profile is not None:
        args.profile.mkdir(parents=True, exist_ok=True)
        stack.profile_dir = args.profile.absolute()
    rows: list[Row] = []
    notes: list[str] = []
    title = f"duewise invoice bench, {now_utc()}"
    load_before = os.getloadavg()[0]
    try:
        async with asyncio.timeout(args.max_minutes * 60):
            await stack.start(log=log)
            log(stack.database_note)
            meter_roots = {
                **{k.removeprefix("invoice-"): v for k, v in stack.process_pids().items()},
                "postgres": stack.postgres_pid(), "tansu": stack.broker_pid(),
            }  # fmt: skip

            if args.cpu_per_request:
                customers = await _create_customers(stack, args.customers)
                api_pid = stack.process_pids()["invoice-api"]
                await cpu_per_request(stack, customers, api_pid, args, console, log)
                return 0
            log(f"COPY ceiling: {args.copy_rows:,} rows x3")
            copy = await copy_ceiling(stack.invoice_db_url, rows=args.copy_rows)
            log(f"  {copy.rate:,.0f} rows/s (runs: {_runs(copy)})")
            log(f"produce ceiling: {args.produce_msgs:,} x ~1 KB msgs x3, acks=all")
            produce = await produce_ceiling(stack.bootstrap, messages=args.produce_msgs)
            log(f"  {produce.rate:,.0f} msgs/s (runs: {_runs(produce)})")

            customers = await _create_customers(stack, args.customers)
            log(f"created {len(customers)} customers")
            base = Job(
                mode="open", base_url=stack.api_url, token=stack.admin_token,
                customer_ids=customers, prefix="", idempotency_key=not args.no_idempotency_key,
            )  # fmt: skip
            meter = CpuMeter(meter_roots)

            log("serial: one request at a time, 3s (the unloaded latency)")
            serial_r = await _drive(replace(
                base, mode="closed", prefix="SERIAL", concurrency=1, duration_s=3.0,
                warmup_s=0.5,
            ))  # fmt: skip
            log(f"  p50 {_ms(serial_r.latency_ms, 'p50')}, p99 {_ms(serial_r.latency_ms, 'p99')}")

            log(f"open loop: {args.rate:.0f} req/s, {args.warmup:.0f}s warm-up + "
                f"{args.duration:.0f}s, max {args.max_in_flight} in flight")  # fmt: skip
            meter.start()
            t0 = time.perf_counter()
            open_r = await _drive(replace(
                base, mode="open", prefix="OPEN", rate=args.rate, duration_s=args.duration,
                warmup_s=args.warmup, max_in_flight=args.max_in_flight,
            ))  # fmt: skip
            t_done = time.perf_counter()
            drained = await wait_drained(stack.invoice_db_url, timeout_s=120)
            open_cpu = meter.stop()
            open_cpu["loadgen"] = open_r.loadgen_cpu_s
            open_wall, open_lag = t_done - t0, drained - t_done
            log(f"  {open_r.throughput:.1f} req/s, p99 {_ms(open_r.latency_ms, 'p99')}, "
                f"{open_r.errors} errors; outbox drained {open_lag:.2f}s after")  # fmt: skip

            log(f"closed loop: concurrency {args.concurrency}, {args.closed_duration:.0f}s")
            meter.start()
            t0 = time.perf_counter()
            closed_r = await _drive(replace(
                base, mode="closed", prefix="CLOSED", concurrency=args.concurrency,
                duration_s=args.closed_duration, warmup_s=1.0,
            ))  # fmt: skip
            t_done = time.perf_counter()
            closed_drained = await wait_drained(stack.invoice_db_url, timeout_s=300)
            closed_cpu = meter.stop()
            closed_cpu["loadgen"] = closed_r.loadgen_cpu_s
            closed_wall, closed_lag = t_done - t0, closed_drained - t_done
            log(f"  {closed_r.throughput:.1f} req/s, p99 {_ms(closed_r.latency_ms, 'p99')}; "
                f"outbox drained {closed_lag:.2f}s after")  # fmt: skip

            imp: bulk_import.ImportOutcome | None = None
            if not args.skip_import:
                imp = await bulk_import.run(
                    stack, rows=args.import_rows, log=log, via=args.import_via, meter=meter
                )

        rows += _ceiling_rows(copy, produce)
        rows += _post_rows(args, open_r, closed_r, copy, produce)
        rows.append(Row(
            "POST /v1/invoices one at a time (unloaded): p50 / p99",
            f"{_ms(serial_r.latency_ms, 'p50')} / {_ms(serial_r.latency_ms, 'p99')}",
            target=f"{serial_r.throughput:,.0f} req/s serial",
        ))  # fmt: skip
        notes += [
            f"Machine: {machine()}; 1-min load average {load_before:.2f} before the run, "
            f"{os.getloadavg()[0]:.2f} after"
            + (" (other processes were busy: figures are pessimistic)" if load_before > 0.5 else "")
            + ".",
            f"{stack.database_note}; broker: {stack.broker_origin} ({stack.bootstrap}), "
            f"topic {TOPIC} with {PARTITIONS} partitions.",
            "All traffic over loopback. The load generator is a separate process "
            "(httpx.AsyncClient on uvloop) but shares the same cores with the API, the relay, "
            "PostgreSQL and the broker.",
            f"POST bodies are the contract's (customer_id, number, issue_date, due_date, "
            f"currency, 1-3 lines) across {len(customers)} customers"
            + ("" if args.no_idempotency_key else ", each with a fresh Idempotency-Key")
            + ". Latency is measured from each request's scheduled send time (includes any "
            "wait for a free connection), so queueing is not hidden; service time (from the "
            f"actual send) p50/p99: {_ms(open_r.service_ms, 'p50')} / "
            f"{_ms(open_r.service_ms, 'p99')}; late sends (>5 ms after schedule): "
            f"{open_r.late_sends}, max in flight {open_r.max_in_flight_seen}.",
            f"CPU during the open-loop run, in cores (of 2): {share(open_cpu, open_wall)}; "
            f"the relay had published every invoice.issued.v1 {open_lag:.2f}s after the last "
            f"response (closed loop: {closed_lag:.2f}s).",
            f"CPU during the closed-loop run, in cores: {share(closed_cpu, closed_wall)}; "
            f"closed-loop p50/p99 {_ms(closed_r.latency_ms, 'p50')} / "
            f"{_ms(closed_r.latency_ms, 'p99')}, {closed_r.errors} errors.",
            f"Ceilings: COPY runs {_runs(copy)} rows/s ({copy.n:,} rows of 13 columns into a "
            f"heap without indexes, asyncpg copy_records_to_table); produce runs "
            f"{_runs(produce)} msgs/s ({produce.n:,} x 1 KB, 500 keys, the relay's producer "
            "settings: acks=all, linger 2 ms, no idempotence).",
        ]
        if open_r.error_samples or closed_r.error_samples:
            notes.append(f"Error samples: {(open_r.error_samples + closed_r.error_samples)[:3]}")
        if imp is not None:
            rows += imp.table_rows(copy.rate, IMPORT_TARGET)
            notes += imp.notes
        else:
            rows.append(Row("bulk import rows/s", "skipped", verdict="n/a"))
    except BaseException:
        stack.keep_work_dir = True
        print(f"bench failed; data and logs kept in {stack.work_dir}", file=sys.stderr)
        raise
    finally:
        log("stopping services, broker and PostgreSQL")
        await stack.stop()

    print_table(console, title, rows, notes)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(markdown(title, rows, notes))
    shown = RESULTS.relative_to(Path.cwd()) if RESULTS.is_relative_to(Path.cwd()) else RESULTS
    console.print(f"\nwritten to {shown}")
    return 0


async def cpu_per_request(
    stack: Stack,
    customers: list[str],
    api_pid: int,
    args: argparse.Namespace,
    console: Console,
    log: Log,
) -> None:
    """CPU ms of the API process per POST /v1/invoices and per POST /v1/payments.

    CPU per request, not requests/s, is the figure that survives a busy 2-core machine: the
    requests are sent closed loop at `--concurrency` from this process (not metered), each
    with an Idempotency-Key; a payment pays one of the invoices just issued in full with an
    explicit allocation, as bench.load_mix does. A warm-up of N/10 of each runs unmetered.
    """
    n, conc = args.cpu_per_request, args.concurrency
    headers = {"Authorization": f"Bearer {stack.admin_token}"}
    limits = httpx.Limits(max_connections=conc, max_keepalive_connections=conc)
    today = dt.date.today().isoformat()
    issued: list[tuple[str, str, int]] = []  # (invoice id, customer id, total)

    def invoice_body(i: int) -> dict[str, Any]:
        lines = [
            {
                "description": f"Item {k}",
                "quantity": 1 + (i + k) % 9,
                "unit_price": 100 + (i * 7919 + k) % 250_000,
            }
            for k in range(1 + i % 3)
        ]
        return {"customer_id": customers[i % len(customers)], "number": f"CPU-{i}",
                "issue_date": today, "currency": "EUR", "lines": lines}  # fmt: skip

    async def post_invoice(http: httpx.AsyncClient, i: int) -> None:
        r = await http.post("/v1/invoices", json=invoice_body(i),
                            headers={"Idempotency-Key": f"cpu-i-{i}"})  # fmt: skip
        if r.status_code != 201:
            raise RuntimeError(f"POST /v1/invoices -> {r.status_code}: {r.text[:300]}")
        body = r.json()
        issued.append((body["id"], body["customer_id"], body["total"]))

    async def post_payment(http: httpx.AsyncClient, i: int) -> None:
        inv, cust, total = issued[i]
        body = {"customer_id": cust, "external_id": f"cpu-p-{i}", "amount": total,
                "currency": "EUR", "method": "ach", "received_at": today,
                "allocations": [{"invoice_id": inv, "amount": total}]}  # fmt: skip
        r = await http.post("/v1/payments", json=body, headers={"Idempotency-Key": f"cpu-p-{i}"})
        if r.status_code != 201:
            raise RuntimeError(f"POST /v1/payments -> {r.status_code}: {r.text[:300]}")

    async def phase(
        http: httpx.AsyncClient, send: Any, first: int, count: int
    ) -> tuple[float, float]:
        todo = iter(range(first, first + count))
        cpu0, t0 = tree_cpu(api_pid), time.perf_counter()

        async def worker() -> None:
            for i in todo:
                await send(http, i)

        await asyncio.gather(*(worker() for _ in range(conc)))
        return tree_cpu(api_pid) - cpu0, time.perf_counter() - t0

    warm = max(n // 10, conc)
    results: dict[str, tuple[float, float]] = {}
    async with httpx.AsyncClient(
        base_url=stack.api_url, headers=headers, limits=limits, timeout=30
    ) as http:
        log(f"warm-up: {warm} invoices, {warm} payments")
        await phase(http, post_invoice, 0, warm)
        await phase(http, post_payment, 0, warm)
        log(f"POST /v1/invoices x {n}, concurrency {conc}")
        results["POST /v1/invoices"] = await phase(http, post_invoice, warm, n)
        log(f"POST /v1/payments x {n}, concurrency {conc}")
        results["POST /v1/payments"] = await phase(http, post_payment, warm, n)
    for what, (cpu_s, wall_s) in results.items():
        console.print(
            f"{what}: {cpu_s / n * 1000:.2f} CPU ms per request in the API process "
            f"({n} requests, {n / wall_s:.0f} req/s wall, API {cpu_s / wall_s:.2f} cores)"
        )


def _abandoned(r: Result) -> str:
    return f" ({r.abandoned} unsent in time)" if r.abandoned else ""


def _runs(c: Ceiling) -> str:
    return ", ".join(f"{r:,.0f}" for r in c.runs)


def _ceiling_rows(copy: Ceiling, produce: Ceiling) -> list[Row]:
    return [
        Row("raw COPY into PostgreSQL (ceiling)", _rate(copy.rate, "rows/s"), target="best of 3"),
        Row(
            "raw produce to broker, acks=all (ceiling)",
            _rate(produce.rate, "msgs/s"),
            target="best of 3",
        ),
    ]


def _post_rows(
    args: argparse.Namespace, o: Result, c: Result, copy: Ceiling, produce: Ceiling
) -> list[Row]:
    sustained = o.throughput >= 0.97 * args.rate and o.errors == 0
    p99 = o.latency_ms.get("p99", float("inf"))

    def vs(x: float) -> tuple[str, str]:
        return (
            f"{produce.rate:,.0f} produce / {copy.rate:,.0f} COPY",
            f"{pct(x / produce.rate)} / {pct(x / copy.rate)}",
        )

    open_ceiling, open_ratio = vs(o.throughput)
    closed_ceiling, closed_ratio = vs(c.throughput)
    return [
        Row(f"POST /v1/invoices open loop @ {args.rate:.0f}/s: achieved",
            f"{o.throughput:,.1f} req/s", open_ceiling, open_ratio,
            f">= {0.97 * args.rate:.0f} req/s, 0 errors", verdict(sustained)),
        Row("  latency p50 / p95", f"{_ms(o.latency_ms, 'p50')} / {_ms(o.latency_ms, 'p95')}"),
        Row("  latency p99", _ms(o.latency_ms, "p99"), target=f"< {P99_TARGET_MS:.0f} ms",
            verdict=verdict(p99 < P99_TARGET_MS)),
        Row("  latency max", _ms(o.latency_ms, "max")),
        Row("  errors", f"{o.errors} of {o.sent}" + _abandoned(o), target="0",
            verdict=verdict(o.errors == 0)),
        Row(f"POST /v1/invoices closed loop, concurrency {args.concurrency}: max throughput",
            f"{c.throughput:,.1f} req/s", closed_ceiling, closed_ratio,
            f"p99 {_ms(c.latency_ms, 'p99')}, {c.errors} errors"),
    ]  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    return run_bench(run, _args(argv))


if __name__ == "__main__":
    sys.exit(main())
