"""The whole-system load run (issue #8): `python -m bench.load_mix`.

Every service up, exactly as `make run` starts them (`duewise-dev run`: embedded PostgreSQL,
the Tansu broker, the mail catcher, the four services with all their processes), then for a
bounded time, on loopback only:

1. the raw ceiling: closed-loop `GET /healthz` on the invoice API for a few seconds, the most
   requests per second this stack's HTTP path gives on this machine in this run;
2. a steady open-loop mix: POST /v1/invoices at `--invoices` per second, POST /v1/payments at
   `--payments` per second (each paying in full an invoice created at least a second earlier)
   and collector UI reads (worklist and a customer page, signed in) at `--ui` per second.
   Sends are scheduled whatever the responses do; latency counts from the *scheduled* time,
   so a slow server cannot hide its queueing (no coordinated omission);
3. every second: consumer lag per consumer group (end offsets minus committed offsets over
   every topic the group reads), the unpublished outbox rows per service, and the RSS of
   every service process;
4. after the load: how long until every group's lag and every outbox is back to zero;
5. nothing lost: every invoice and payment that got a 201 is in the invoice database, every
   invoice.events record produced reached every consumer's inbox, and notify recorded exactly
   one delivery message per invoice.

A table is printed and written as JSON and Markdown to bench/results/load-latest.{json,md}.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from aiokafka import AIOKafkaConsumer, TopicPartition
from duewise_dev._util import LOCALHOST, free_port
from duewise_dev.postgres import database_url
from duewise_dev.seed import Urls, create_users
from duewise_dev.services import all_topics
from rich.console import Console

from bench.load import percentiles
from bench.report import Row, machine, markdown, now_utc, pct, print_table, verdict
from bench.stack import make_work_dir

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).parent / "results" / "load-latest"
SERVICES = ("invoice", "dunning", "risk", "notify")
PORTS = {"invoice": 8001, "dunning": 8002, "risk": 8003, "notify": 8004}
TOKEN = "load-bench-admin-token-" + uuid.uuid4().hex
SECRET = "load-bench-notify-secret-" + uuid.uuid4().hex
RSS_TARGET_MB = 300.0
DRAIN_TARGET_S = 5.0


def _args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.load_mix", description=__doc__.split("\n")[0])
    p.add_argument("--invoices", type=float, default=200.0, help="invoices per second offered")
    p.add_argument("--payments", type=float, default=100.0, help="payments per second offered")
    p.add_argument("--ui", type=float, default=4.0, help="UI page reads per second offered")
    p.add_argument("--duration", type=float, default=180.0, help="seconds of steady load")
    p.add_argument("--customers", type=int, default=200, help="customers the load spreads over")
    p.add_argument("--drain-timeout", type=float, default=300.0, help="seconds to wait after")
    p.add_argument("--max-in-flight", type=int, default=256, help="per stream")
    return p.parse_args(argv)


# --- the stack ----------------------------------------------------------------------------


@dataclass
class Stack:
    proc: subprocess.Popen[bytes]
    data_dir: Path
    pg_port: int
    kafka_port: int
    catcher_port: int

    def db(self, service: str) -> str:
        return database_url(
            f"postgresql://postgres@{LOCALHOST}:{self.pg_port}/postgres", f"duewise_{service}"
        )

    @property
    def bootstrap(self) -> str:
        return f"{LOCALHOST}:{self.kafka_port}"


async def start_stack(console: Console) -> Stack:
    data_dir = make_work_dir()
    pg_port, kafka_port, catcher_port = free_port(), free_port(), free_port()
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DATABASE_URL", "KAFKA_BOOTSTRAP_SERVERS", "SMTP_URL")
    }
    env.update(
        DUEWISE_ADMIN_TOKEN=TOKEN,
        NOTIFY_SECRET_KEY=SECRET,
        DUEWISE_PG_PORT=str(pg_port),
        DUEWISE_KAFKA_PORT=str(kafka_port),
        DUEWISE_SMTP_PORT=str(free_port()),
        DUEWISE_CATCHER_PORT=str(catcher_port),
    )
    log = (data_dir / "stack.out").open("wb")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "duewise_dev.cli",
            "run",
            "--data-dir",
            str(data_dir / "stack"),
            "--quiet",
        ],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    console.print(f"starting the stack (log: {data_dir / 'stack.out'})")
    deadline = time.monotonic() + 240
    async with httpx.AsyncClient(timeout=2) as http:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(
                    "duewise-dev run exited:\n" + (data_dir / "stack.out").read_text()[-3000:]
                )
            try:
                codes = [
                    (await http.get(f"http://{LOCALHOST}:{p}/readyz")).status_code
                    for p in PORTS.values()
                ]
                if all(c == 200 for c in codes):
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("the stack was not ready within 240 s")
            await asyncio.sleep(0.5)
    return Stack(proc, data_dir, pg_port, kafka_port, catcher_port)


def stop_stack(stack: Stack) -> None:
    with contextlib.suppress(ProcessLookupError):
        stack.proc.send_signal(signal.SIGINT)
    try:
        stack.proc.wait(90)
    except subprocess.TimeoutExpired:
        os.killpg(stack.proc.pid, signal.SIGKILL)


def service_processes(root_pid: int) -> dict[str, list[int]]:
    """`invoice api` -> pids, for every `python -m <service>.cli <process>` under the stack."""
    children: dict[int, list[int]] = defaultdict(list)
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
                children[ppid].append(int(d.name))
    found: dict[str, list[int]] = defaultdict(list)
    todo = [root_pid]
    while todo:
        pid = todo.pop()
        todo += children.get(pid, [])
        with contextlib.suppress(OSError):
            argv = (Path("/proc") / str(pid) / "cmdline").read_bytes().split(b"\0")
            args = [a.decode() for a in argv if a]
            if "-m" in args:
                module = args[args.index("-m") + 1]
                if module.endswith(".cli") and module[:-4] in SERVICES:
                    rest = args[args.index("-m") + 2 :]
                    found[f"{module[:-4]} {rest[0] if rest else ''}".strip()].append(pid)
    return found


def cpu_by_role(root_pid: int) -> dict[str, float]:
    """CPU seconds (user + system) used so far by every process under the stack, by role:
    `invoice api`, ... for service processes, else the executable's name (postgres, tansu,
    the catcher's python), plus this process (`load generator`)."""
    roles = {pid: name for name, pids in service_processes(root_pid).items() for pid in pids}
    children: dict[int, list[int]] = defaultdict(list)
    stats: dict[int, tuple[str, float]] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                raw = (d / "stat").read_text()
                comm = raw[raw.index("(") + 1 : raw.rindex(")")]
                fields = raw.rsplit(")", 1)[1].split()
                children[int(fields[1])].append(int(d.name))
                ticks = int(fields[11]) + int(fields[12])
                stats[int(d.name)] = (comm, ticks / os.sysconf("SC_CLK_TCK"))
    used: dict[str, float] = defaultdict(float)
    todo = [root_pid]
    while todo:
        pid = todo.pop()
        todo += children.get(pid, [])
        if pid in stats:
            comm, seconds = stats[pid]
            used[roles.get(pid, "postgres" if comm.startswith("postgres") else comm)] += seconds
    if os.getpid() in stats:
        used["load generator"] += stats[os.getpid()][1]
    return dict(used)


def rss_mb(pid: int) -> float:
    with contextlib.suppress(OSError):
        for line in (Path("/proc") / str(pid) / "status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


# --- load --------------------------------------------------------------------------------


@dataclass
class Stream:
    name: str
    latencies: list[float] = field(default_factory=list)
    codes: dict[int, int] = field(default_factory=lambda: defaultdict(int))
    errors: int = 0
    sent: int = 0
    unsent: int = 0


@dataclass
class Book:
    customers: list[dict[str, Any]]
    invoices: list[tuple[str, str, int, str, float]] = field(
        default_factory=list
    )  # id, cust, total, cur, t
    paid: set[str] = field(default_factory=set)
    payment_ids: list[str] = field(default_factory=list)


async def create_customers(http: httpx.AsyncClient, n: int, run: str) -> list[dict[str, Any]]:
    sem = asyncio.Semaphore(16)
    currencies = ("EUR", "USD", "JPY")

    async def one(i: int) -> dict[str, Any]:
        body = {
            "name": f"Load {run} {i:04d}",
            "external_id": f"load-{run}-{i}",
            "currency": currencies[i % 3],
            "timezone": ("Europe/Berlin", "America/New_York", "Asia/Tokyo")[i % 3],
            "country": ("DE", "US", "JP")[i % 3],
            "locale": "en",
            "payment_terms_days": 30,
            "owner": ("carol", "dave")[i % 2],
            "contacts": [{"name": "AP", "email": f"ap-{i}@load-{run}.example", "role": "billing"}],
        }
        async with sem:
            r = await http.post(
                "/v1/customers", json=body, headers={"Idempotency-Key": f"c-{run}-{i}"}
            )
        r.raise_for_status()
        doc: dict[str, Any] = r.json()
        return doc

    return list(await asyncio.gather(*(one(i) for i in range(n))))


async def open_loop(
    stream: Stream, rate: float, duration: float, max_in_flight: int, send: Any
) -> None:
    """Fire `send(i)` at `rate`/s for `duration` s; latency from each send's scheduled time."""
    if rate <= 0:
        return
    slots = asyncio.Semaphore(max_in_flight)
    start = time.monotonic()
    tasks: set[asyncio.Task[None]] = set()

    async def fire(i: int, scheduled: float) -> None:
        try:
            code = await send(i)
            stream.codes[code] += 1
        except (httpx.HTTPError, OSError):
            stream.errors += 1
        finally:
            stream.latencies.append(time.monotonic() - scheduled)
            slots.release()

    i = 0
    while True:
        scheduled = start + i / rate
        if scheduled - start >= duration:
            break
        delay = scheduled - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        await slots.acquire()
        if time.monotonic() - start >= duration:
            # The server fell so far behind that this send's slot came after the run's end:
            # it is counted as not sent, not sent late (the run stays bounded in time).
            slots.release()
            stream.unsent = int(duration * rate) - i
            break
        stream.sent += 1
        t = asyncio.create_task(fire(i, scheduled))
        tasks.add(t)
        t.add_done_callback(tasks.discard)
        i += 1
    if tasks:
        await asyncio.gather(*tasks)


async def ui_session(stack: Stack) -> httpx.AsyncClient:
    import re

    # notify's Settings read the sealing key from this process's environment: it must be the
    # running notify's, or every sealed user token fails to open there (a 500 per UI page).
    os.environ["NOTIFY_SECRET_KEY"] = SECRET

    await create_users(
        urls=Urls(*(f"http://{LOCALHOST}:{PORTS[s]}" for s in SERVICES)),
        admin_token=TOKEN,
        notify_db_url=stack.db("notify"),
        environ={**os.environ, "NOTIFY_SECRET_KEY": SECRET},
    )
    ui = httpx.AsyncClient(base_url=f"http://{LOCALHOST}:{PORTS['notify']}", timeout=30)
    form = await ui.get("/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
    assert token, "no CSRF token on the sign-in form"
    r = await ui.post(
        "/login",
        data={"user_name": "admin", "password": "demo-admin", "csrf_token": token.group(1)},
    )
    if r.status_code >= 400:
        raise RuntimeError(f"UI sign-in failed: {r.status_code} {r.text[:200]}")
    return ui


# --- monitors ----------------------------------------------------------------------------


@dataclass
class Sample:
    t: float
    lag: dict[str, int]
    outbox: dict[str, int]
    rss: dict[str, float]


async def consumer_lags(
    groups: dict[str, AIOKafkaConsumer], probe: AIOKafkaConsumer
) -> dict[str, int]:
    """Records not yet consumed, per consumer group: the topics' end offsets minus the offsets
    the group has committed (what Kafka calls lag). A group commits after the transaction
    that applied a batch, so this is what it has applied. (The inbox is no measure: a
    consumer writes no inbox row for the types it ignores, so a topic it mostly ignores —
    invoice's consumer on dunning.events — looked like a lag that never drained.)"""
    counts = all_topics()
    parts = [TopicPartition(t, p) for t, n in counts.items() for p in range(n)]
    ends = await probe.end_offsets(parts)
    lags: dict[str, int] = {}
    for name, group in groups.items():
        committed = {tp: await group.committed(tp) for tp in parts}
        # A group reads the topics it has committed on (each partition of them, 0 if none yet).
        read = {tp.topic for tp, offset in committed.items() if offset is not None}
        lags[name] = sum(
            max(0, ends[tp] - (committed[tp] or 0)) for tp in parts if tp.topic in read
        )
    return lags


async def outbox_backlog(pools: dict[str, asyncpg.Pool]) -> dict[str, int]:
    out = {}
    for s, pool in pools.items():
        out[s] = int(await pool.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NULL"))
    return out


async def monitor(
    stack: Stack,
    pools: dict[str, asyncpg.Pool],
    samples: list[Sample],
    stop: asyncio.Event,
    t0: float,
) -> None:
    probe = AIOKafkaConsumer(bootstrap_servers=stack.bootstrap)
    await probe.start()
    # One unsubscribed client per consumer group, only to ask the coordinator for its offsets.
    groups = {
        s: AIOKafkaConsumer(bootstrap_servers=stack.bootstrap, group_id=s, enable_auto_commit=False)
        for s in SERVICES
    }
    for group in groups.values():
        await group.start()
    try:
        while not stop.is_set():
            procs = service_processes(stack.proc.pid)
            rss = {name: sum(rss_mb(p) for p in pids) for name, pids in procs.items()}
            try:
                lag = await consumer_lags(groups, probe)
            except Exception as exc:  # a sample lost to a broker hiccup is reported, not fatal
                lag = {"(error)": -1}
                print(f"lag sample failed: {exc!r}", file=sys.stderr)
            samples.append(Sample(time.monotonic() - t0, lag, await outbox_backlog(pools), rss))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1.0)
    finally:
        for group in groups.values():
            await group.stop()
        await probe.stop()


# --- checks ------------------------------------------------------------------------------


async def lost_and_doubled(pools: dict[str, asyncpg.Pool], book: Book) -> dict[str, int]:
    inv = pools["invoice"]
    ids = [i[0] for i in book.invoices]
    present = int(
        await inv.fetchval("SELECT count(*) FROM invoice WHERE id = ANY($1::text[])", ids)
    )
    pays = int(
        await inv.fetchval(
            "SELECT count(*) FROM payment WHERE id = ANY($1::text[])", book.payment_ids
        )
    )
    produced = {
        r["event_id"]
        for r in await inv.fetch("SELECT event_id FROM outbox WHERE topic = 'invoice.events'")
    }
    result = {
        "invoices missing": len(ids) - present,
        "payments missing": len(book.payment_ids) - pays,
    }
    for s in ("dunning", "risk", "notify"):
        seen = {
            r["event_id"]
            for r in await pools[s].fetch(
                "SELECT event_id FROM inbox WHERE topic = 'invoice.events'"
            )
        }
        result[f"invoice.events not in {s}'s inbox"] = len(produced - seen)
    rows = await pools["notify"].fetch(
        "SELECT invoice_ids->>0 AS invoice, count(*) AS n FROM message"
        " WHERE kind = 'invoice' AND invoice_ids->>0 = ANY($1::text[]) GROUP BY 1",
        ids,
    )
    result["invoice mails missing in notify"] = len(ids) - len(rows)
    result["invoice mails doubled in notify"] = sum(r["n"] - 1 for r in rows)
    return result


# --- run ---------------------------------------------------------------------------------


async def healthz_ceiling(seconds: float = 5.0, concurrency: int = 16) -> float:
    n = 0
    end = time.monotonic() + seconds
    async with httpx.AsyncClient(
        base_url=f"http://{LOCALHOST}:{PORTS['invoice']}", timeout=10
    ) as http:

        async def worker() -> None:
            nonlocal n
            while time.monotonic() < end:
                await http.get("/healthz")
                n += 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return n / seconds


async def run(args: argparse.Namespace, console: Console) -> int:
    stack = await start_stack(console)
    pools: dict[str, asyncpg.Pool] = {}
    try:
        for s in SERVICES:
            pools[s] = await asyncpg.create_pool(stack.db(s), min_size=1, max_size=2)
        run_id = uuid.uuid4().hex[:6]
        headers = {"Authorization": f"Bearer {TOKEN}"}
        # Writes go through several small clients, not one big one: httpcore's pool matches
        # queued requests to connections in O(connections x requests) on every change, and
        # one client of 512 connections cost the generator ~0.6 of a core by itself
        # (cProfile: 40 of 72 s in connection_pool._assign_requests_to_connections).
        per_client = 32
        limits = httpx.Limits(max_connections=per_client, max_keepalive_connections=per_client)
        writers = [
            httpx.AsyncClient(
                base_url=f"http://{LOCALHOST}:8001", headers=headers, timeout=60, limits=limits
            )
            for _ in range(max(1, args.max_in_flight * 2 // per_client))
        ]
        async with contextlib.AsyncExitStack() as clients:
            for writer in writers:
                await clients.enter_async_context(writer)
            http = writers[0]
            console.print("raw ceiling: GET /healthz, closed loop, 16 connections, 5 s")
            ceiling = await healthz_ceiling()
            console.print(f"  {ceiling:,.0f} requests/s")
            customers = await create_customers(http, args.customers, run_id)
            ui = await ui_session(stack)
            book = Book(customers)
            rng = random.Random(7)
            today = dt.date.today()
            streams = {
                k: Stream(k)
                for k in (
                    "POST /v1/invoices",
                    "POST /v1/payments",
                    "UI worklist",
                    "UI customer page",
                )
            }

            async def invoice(i: int) -> int:
                c = customers[i % len(customers)]
                total = rng.randrange(10_000, 500_000)
                due = today + dt.timedelta(days=rng.choice((-3, 0, 7, 30)))
                body = {
                    "customer_id": c["id"],
                    "number": f"L{run_id}-{i:07d}",
                    "issue_date": (due - dt.timedelta(days=30)).isoformat(),
                    "due_date": due.isoformat(),
                    "currency": c["currency"],
                    "lines": [{"description": "Load", "quantity": 1, "unit_price": total}],
                }
                r = await writers[i % len(writers)].post(
                    "/v1/invoices", json=body, headers={"Idempotency-Key": f"i-{run_id}-{i}"}
                )
                if r.status_code == 201:
                    book.invoices.append(
                        (r.json()["id"], c["id"], total, c["currency"], time.monotonic())
                    )
                return r.status_code

            async def payment(i: int) -> int:
                cutoff = time.monotonic() - 1.0
                pick = next(
                    (x for x in book.invoices if x[4] < cutoff and x[0] not in book.paid), None
                )
                if pick is None:
                    return 0  # nothing old enough to pay yet (the first second)
                book.paid.add(pick[0])
                inv_id, cust, total, cur, _ = pick
                body = {
                    "customer_id": cust,
                    "external_id": f"p-{run_id}-{i}",
                    "amount": total,
                    "currency": cur,
                    "method": rng.choice(("ach", "card", "wire", "check")),
                    "received_at": today.isoformat(),
                    "allocations": [{"invoice_id": inv_id, "amount": total}],
                }
                r = await writers[i % len(writers)].post(
                    "/v1/payments", json=body, headers={"Idempotency-Key": f"p-{run_id}-{i}"}
                )
                if r.status_code == 201:
                    book.payment_ids.append(r.json()["id"])
                return r.status_code

            async def worklist(i: int) -> int:
                return (await ui.get("/")).status_code

            async def customer_page(i: int) -> int:
                return (
                    await ui.get(f"/customers/{customers[i % len(customers)]['id']}")
                ).status_code

            samples: list[Sample] = []
            stop = asyncio.Event()
            cpu_before = cpu_by_role(stack.proc.pid)
            t0 = time.monotonic()
            mon = asyncio.create_task(monitor(stack, pools, samples, stop, t0))
            console.print(
                f"load: {args.invoices:g} invoices/s + {args.payments:g} payments/s"
                f" + {args.ui:g} UI reads/s for {args.duration:g} s over {len(customers)} customers"
            )
            await asyncio.gather(
                open_loop(
                    streams["POST /v1/invoices"],
                    args.invoices,
                    args.duration,
                    args.max_in_flight,
                    invoice,
                ),
                open_loop(
                    streams["POST /v1/payments"],
                    args.payments,
                    args.duration,
                    args.max_in_flight,
                    payment,
                ),
                open_loop(streams["UI worklist"], args.ui / 2, args.duration, 8, worklist),
                open_loop(
                    streams["UI customer page"], args.ui / 2, args.duration, 8, customer_page
                ),
            )
            load_end = time.monotonic() - t0
            cpu_after = cpu_by_role(stack.proc.pid)
            cpu = {k: v - cpu_before.get(k, 0.0) for k, v in cpu_after.items()}
            console.print(
                f"load ended after {load_end:.0f} s; waiting for lag and outboxes to drain"
            )
            deadline = time.monotonic() + args.drain_timeout
            drained_at: float | None = None
            while time.monotonic() < deadline:
                await asyncio.sleep(1.0)
                last = samples[-1] if samples else None
                if (
                    last
                    and last.t > load_end
                    and all(v == 0 for v in last.lag.values())
                    and not any(last.outbox.values())
                ):
                    drained_at = last.t
                    break
            stop.set()
            await mon
            await ui.aclose()
            checks = await lost_and_doubled(pools, book)
            sender_backlog = int(
                await pools["notify"].fetchval(
                    "SELECT count(*) FROM message WHERE status IN ('pending', 'sending')"
                )
            )
        return report(
            args,
            console,
            ceiling,
            streams,
            samples,
            load_end,
            drained_at,
            checks,
            sender_backlog,
            cpu,
        )
    finally:
        for pool in pools.values():
            await pool.close()
        stop_stack(stack)


def report(
    args: argparse.Namespace,
    console: Console,
    ceiling: float,
    streams: dict[str, Stream],
    samples: list[Sample],
    load_end: float,
    drained_at: float | None,
    checks: dict[str, int],
    sender_backlog: int,
    cpu: dict[str, float],
) -> int:
    rows: list[Row] = []
    ok_all = True
    for name, s in streams.items():
        done = sum(n for c, n in s.codes.items() if 200 <= c < 300)
        rate = done / args.duration
        lat = percentiles(s.latencies) or {"p50": 0.0, "p99": 0.0}
        offered = {"POST /v1/invoices": args.invoices, "POST /v1/payments": args.payments}.get(
            name, args.ui / 2
        )
        ok = rate >= 0.98 * offered if name.startswith("POST") else True
        ok_all &= ok
        rows.append(
            Row(
                f"{name}: accepted/s (offered {offered:g})",
                f"{rate:,.1f}",
                f"{ceiling:,.0f}",
                pct(rate / ceiling),
                f"≥ {offered:g}",
                verdict(ok) if name.startswith("POST") else "",
            )
        )
        rows.append(Row(f"{name}: p50 / p99 ms", f"{lat['p50']:,.0f} / {lat['p99']:,.0f}"))
        other = {c: n for c, n in s.codes.items() if not 200 <= c < 300 and c != 0}
        if s.unsent:
            rows.append(Row(f"{name}: not sent by the end (no free slot)", f"{s.unsent:,}"))
        if other or s.errors:
            rows.append(Row(f"{name}: non-2xx / transport errors", f"{dict(other)} / {s.errors}"))
    groups = sorted(set().union(*(x.lag for x in samples)))
    peak_lag = {g: max(x.lag.get(g, 0) for x in samples) for g in groups}
    rows.append(
        Row(
            "peak consumer lag (records not yet applied) per consumer",
            ", ".join(f"{g} {v:,}" for g, v in sorted(peak_lag.items())),
        )
    )
    peak_outbox = {s: max(x.outbox.get(s, 0) for x in samples) for s in SERVICES}
    rows.append(
        Row(
            "peak outbox backlog per service",
            ", ".join(f"{s} {v:,}" for s, v in peak_outbox.items()),
        )
    )
    drain = None if drained_at is None else max(0.0, drained_at - load_end)
    drain_ok = drain is not None and drain <= DRAIN_TARGET_S
    ok_all &= drain_ok
    rows.append(
        Row(
            "lag and outboxes back to 0 after the load",
            "never (timeout)" if drain is None else f"{drain:.0f} s",
            "",
            "",
            f"≤ {DRAIN_TARGET_S:g} s",
            verdict(drain_ok),
        )
    )
    peak_rss: dict[str, float] = defaultdict(float)
    for x in samples:
        for k, v in x.rss.items():
            peak_rss[k] = max(peak_rss[k], v)
    by_service = {
        s: max((v for k, v in peak_rss.items() if k.split()[0] == s), default=0.0) for s in SERVICES
    }
    rss_ok = all(v <= RSS_TARGET_MB for v in by_service.values())
    ok_all &= rss_ok
    rows.append(
        Row(
            "peak RSS of the largest process per service (MB)",
            ", ".join(f"{s} {v:,.0f}" for s, v in by_service.items()),
            "",
            "",
            f"≤ {RSS_TARGET_MB:g}",
            verdict(rss_ok),
        )
    )
    clean = not any(checks.values())
    ok_all &= clean
    rows.append(
        Row("lost or doubled (see notes)", str(sum(checks.values())), "", "", "0", verdict(clean))
    )
    notes = [
        f"{now_utc()}, {machine()}; load average at the end {os.getloadavg()[0]:.1f}",
        f"command: python -m bench.load_mix --invoices {args.invoices:g}"
        f" --payments {args.payments:g} --ui {args.ui:g} --duration {args.duration:g}"
        f" --customers {args.customers}",
        "ceiling: closed-loop GET /healthz on the invoice API (16 connections, 5 s),"
        " same stack, same run",
        "the load generator runs in this process on the same 2 cores as every service,"
        " PostgreSQL and the broker",
        "checks: " + "; ".join(f"{k}: {v}" for k, v in checks.items()),
        "notify messages still pending or sending at the end (mail to the local catcher):"
        f" {sender_backlog:,}",
        "per-process peak RSS: " + ", ".join(f"{k} {v:,.0f}" for k, v in sorted(peak_rss.items())),
        f"where the two cores went during the load, in cores (1.00 = one core busy all"
        f" {load_end:.0f} s): "
        + ", ".join(
            f"{k} {v / load_end:.2f}"
            for k, v in sorted(cpu.items(), key=lambda kv: -kv[1])
            if v / load_end >= 0.005
        ),
    ]
    print_table(console, "duewise under a steady mixed load", rows, notes)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.with_suffix(".md").write_text(
        markdown("duewise under a steady mixed load", rows, notes)
    )
    RESULTS.with_suffix(".json").write_text(
        json.dumps(
            {
                "rows": [r.__dict__ for r in rows],
                "notes": notes,
                "samples": [s.__dict__ for s in samples],
            },
            indent=1,
        )
    )
    return 0 if ok_all else 1


def main(argv: list[str] | None = None) -> int:
    args = _args(argv)
    console = Console()
    return asyncio.run(run(args, console))


if __name__ == "__main__":
    raise SystemExit(main())
