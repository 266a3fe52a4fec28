"""The notify benchmark (issue #4): `python -m bench.notify_bench`.

In one bounded run, on loopback only:

1. a durable embedded PostgreSQL and a Tansu broker (bench/stack.py) with the invoice API and
   relay; the devstack's mail catcher (`python -m duewise_dev.catcher`) as its own process;
2. sender throughput: a second invoice API process on a database of its own (no relay: its
   events never reach the broker) holds the customers and open invoices the last look asks
   about; notify's projections are built from that service's own outbox events (applied with
   notify's `handle`, as the consumer would), and messages recorded by `handle` from
   `reminder.due.v1` and `invoice.issued.v1`. Per configuration (NOTIFY_SENDER_CONCURRENCY /
   NOTIFY_SMTP_POOL_SIZE / sender processes): `python -m notify.cli sender` processes start,
   a warm-up batch is sent, then N pending messages are committed at once and timed until
   none is pending or sending; emails/s;
3. the raw ceiling: a bare aiosmtplib loop over the same number of reused connections to the
   same catcher, N pre-built messages of the measured size of each kind; emails/s;
4. invoice-to-inbox: notify's consumer, sender and relay on the broker; POST /v1/invoices at
   a fixed rate (open loop) for a bounded time; each invoice matched to its mail by the
   number in the subject; POST response -> the catcher's `received` time, p50/p99/max, and
   exactly one mail per invoice;
5. a table, written as JSON and Markdown to bench/results/notify-latest.{json,md}.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import random
import re
import resource
import sys
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from duewise_dev._util import LOCALHOST, free_port, log_tail
from duewise_dev.broker import ensure_topics
from duewise_dev.postgres import database_url, ensure_database
from duewise_dev.services import all_topics
from rich.console import Console

from bench import bulk_import
from bench.cpu import CpuMeter, share
from bench.load import percentiles
from bench.report import Row, machine, markdown, now_utc, pct, print_table, verdict
from bench.runner import run_bench
from bench.stack import BenchSetupError, Log, Stack, _stop_process, make_work_dir

RESULTS = Path(__file__).parent / "results" / "notify-latest"
THROUGHPUT_TARGET = 300.0  # emails/s sustained
P99_TARGET_MS = 1000.0  # invoice-to-inbox at 50 invoices/s
TP_DB, LAT_DB, INV_TP_DB = "duewise_notify_bench_tp", "duewise_notify", "duewise_invoice_tp"
FROM = "Accounts Receivable <ar@duewise.local>"


@dataclass(frozen=True)
class Config:
    """One sender deployment: concurrency per process, SMTP pool per process, processes."""

    concurrency: int
    pool: int
    processes: int = 1

    @classmethod
    def parse(cls, spec: str) -> Config:
        c, p, n = (int(x) for x in spec.split("/"))
        return cls(c, p, n)

    @property
    def label(self) -> str:
        return f"concurrency {self.concurrency}, pool {self.pool}, {self.processes} proc"

    @property
    def connections(self) -> int:
        return self.pool * self.processes


def _args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m bench.notify_bench", description="The notify service benchmark."
    )
    p.add_argument("--customers", type=int, default=210, help="throughput: customers")
    p.add_argument("--reminders", type=int, default=600,
                   help="throughput: reminders per run (one open invoice each)")  # fmt: skip
    p.add_argument("--invoice-mails", type=int, default=400,
                   help="throughput: invoice emails (PDF attached) per run")  # fmt: skip
    p.add_argument("--configs", default="8/4/1,32/8/1,8/4/2",
                   help="concurrency/pool/processes, comma separated; reminders run for "
                   "each, invoices for the first and the best")  # fmt: skip
    p.add_argument(
        "--invoices-per-reminder", type=int, default=1,
        help="throughput: each reminder lists up to this many of its customer's invoices",
    )  # fmt: skip
    p.add_argument("--warmup", type=int, default=30, help="messages sent before each timing")
    p.add_argument("--ceiling-runs", type=int, default=2, help="best of, per ceiling")
    p.add_argument("--rate", type=float, default=50.0, help="latency: invoices/s")
    p.add_argument("--duration", type=float, default=60.0, help="latency: seconds of load")
    p.add_argument("--drain", type=float, default=60.0,
                   help="latency: how long mails may take after the last POST")  # fmt: skip
    p.add_argument(
        "--latency-customers",
        type=int,
        default=600,
        help="at most 10 emails per customer per day: keep rate x duration / this < 10",
    )
    p.add_argument(
        "--latency-config",
        default="8/4/1",
        help="the sender for the latency run (default: the shipped settings)",
    )
    p.add_argument("--skip-latency", action="store_true")
    p.add_argument("--max-minutes", type=float, default=25.0, help="hard bound on the run")
    p.add_argument("--keep", action="store_true", help="keep the temp dir (data, logs)")
    p.add_argument("--profile", type=Path, metavar="DIR",
                   help="sender processes under cProfile (slower); .prof files in DIR")  # fmt: skip
    return p.parse_args(argv)


def _self_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _loadavg() -> str:
    return "/".join(f"{x:.2f}" for x in os.getloadavg())


# --- processes ----------------------------------------------------------------------------


class Procs:
    """Subprocesses started by this bench (besides the Stack's), stopped in reverse order."""

    def __init__(self, log_dir: Path, profile_dir: Path | None = None) -> None:
        self.log_dir = log_dir
        self.profile_dir = profile_dir
        self.running: dict[str, asyncio.subprocess.Process] = {}

    async def spawn(self, name: str, argv: list[str], env: dict[str, str]) -> int:
        if self.profile_dir is not None and argv[-1] == "sender":
            # Written when the worker returns after SIGTERM (run_until_signalled).
            argv = ["-m", "cProfile", "-o", str(self.profile_dir / f"{name}.prof"), *argv]
        with (self.log_dir / f"{name}.log").open("ab") as out:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, *argv, env=env, stdin=asyncio.subprocess.DEVNULL,
                stdout=out, stderr=out, process_group=0,
            )  # fmt: skip
        self.running[name] = proc
        return proc.pid

    async def run_once(self, name: str, argv: list[str], env: dict[str, str]) -> None:
        await self.spawn(name, argv, env)
        proc = self.running.pop(name)
        try:
            code = await asyncio.wait_for(proc.wait(), 120)
        finally:
            await _stop_process(proc)
        if code != 0:
            raise BenchSetupError(f"{name} exited {code}:\n{self.tail(name)}")

    def check(self, *names: str) -> None:
        for name in names or tuple(self.running):
            proc = self.running.get(name)
            if proc is not None and proc.returncode is not None:
                raise BenchSetupError(f"{name} exited {proc.returncode}:\n{self.tail(name)}")

    def tail(self, name: str) -> str:
        return log_tail(self.log_dir / f"{name}.log")

    async def stop(self, *names: str) -> None:
        for name in reversed(names or tuple(self.running)):
            proc = self.running.pop(name, None)
            if proc is not None:
                await _stop_process(proc)


async def _wait_http(url: str, procs: Procs, name: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(timeout=2.0) as http:
        while True:
            procs.check(name)
            with contextlib.suppress(httpx.HTTPError):
                if (await http.get(url)).status_code == 200:
                    return
            if time.monotonic() > deadline:
                raise BenchSetupError(f"{name} not ready after {timeout:.0f}s:\n{procs.tail(name)}")
            await asyncio.sleep(0.2)


def _notify_env(
    stack: Stack, db_url: str, smtp_url: str, invoice_api: str, cfg: Config
) -> dict[str, str]:
    return {
        **os.environ,
        "NOTIFY_DATABASE_URL": db_url,
        "KAFKA_BOOTSTRAP_SERVERS": stack.bootstrap,
        "DUEWISE_ADMIN_TOKEN": stack.admin_token,
        "SMTP_URL": smtp_url,
        "INVOICE_API_URL": invoice_api,
        "NOTIFY_SENDER_CONCURRENCY": str(cfg.concurrency),
        "NOTIFY_SMTP_POOL_SIZE": str(cfg.pool),
        "PYTHONUNBUFFERED": "1",
    }


# --- the invoice API as a client ------------------------------------------------------------


def _invoice_body(
    rng: random.Random, customer: dict[str, Any], number: str, issue: dt.date
) -> dict[str, Any]:
    lines = [
        {"description": f"Consulting, work package {k + 1}", "quantity": rng.randint(1, 9),
         "unit_price": rng.randint(1_000, 250_000)}
        for k in range(rng.randint(1, 4))
    ]  # fmt: skip
    return {
        "customer_id": customer["id"], "number": number, "issue_date": issue.isoformat(),
        "due_date": (issue + dt.timedelta(days=30)).isoformat(),
        "currency": customer["currency"], "po_number": f"PO-{rng.randint(1000, 9999)}",
        "lines": lines,
    }  # fmt: skip


async def _post_all(
    http: httpx.AsyncClient, path: str, bodies: list[dict[str, Any]], concurrency: int = 12
) -> list[dict[str, Any]]:
    slots = asyncio.Semaphore(concurrency)

    async def one(body: dict[str, Any]) -> dict[str, Any]:
        async with slots:
            r = await http.post(path, json=body, headers={"Idempotency-Key": uuid.uuid4().hex})
            if r.status_code != 201:
                raise BenchSetupError(f"POST {path} -> {r.status_code}: {r.text[:500]}")
            out: dict[str, Any] = r.json()
            return out

    return list(await asyncio.gather(*(one(b) for b in bodies)))


def _client(base_url: str, token: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=base_url, headers={"Authorization": f"Bearer {token}"}, timeout=30.0
    )


# --- seeding the throughput database ------------------------------------------------------


@dataclass
class Seed:
    customers: int = 0
    invoices: int = 0
    reminders: int = 0
    invoice_messages: int = 0
    seconds: float = 0.0


async def _seed_throughput(
    args: argparse.Namespace, stack: Stack, inv_db: str, tp_db: str, log: Log
) -> Seed:
    """Customers and open invoices imported into the second invoice service (its importer, as
    bench/bulk_import.py runs it); notify's projections from that service's outbox events; one
    reminder per invoice, and invoice messages from the same invoices as if issued now."""
    from duewise_events.catalogue import BY_TYPE, ReminderDue, ReminderInvoice
    from duewise_events.envelope import Envelope
    from duewise_service.db import make_engine, make_sessionmaker
    from notify.config import Settings
    from notify.handlers import handle

    t0 = time.perf_counter()
    seed = Seed()
    n_inv = max(args.reminders, args.invoice_mails) + args.warmup
    work = stack.work_dir / "throughput"
    work.mkdir(exist_ok=True)
    cust_csv, inv_csv = work / "AR_Customer.csv", work / "AR_OpenInvoice.csv"
    bulk_import._write_customers(cust_csv, args.customers)
    bulk_import._write_invoices(inv_csv, n_inv, args.customers)
    target = Stack(work_dir=work, invoice_db_url=inv_db)  # the importer reads only the URL
    await bulk_import._import_in_process("customers", cust_csv, target, log)
    await bulk_import._import_in_process("invoices", inv_csv, target, log)

    conn = await asyncpg.connect(inv_db)
    try:
        rows = await conn.fetch("SELECT event_id, type, key, time, payload FROM outbox ORDER BY id")
    finally:
        await conn.close()
    projections = [
        Envelope(
            id=r["event_id"],
            source="duewise/invoice",
            type=r["type"],
            time=r["time"],
            key=r["key"],
            data=json.loads(r["payload"]) if isinstance(r["payload"], str) else r["payload"],
        )
        for r in rows
        if r["type"] in BY_TYPE
    ]
    issued = [e.data for e in projections if e.type == "invoice.issued.v1"]
    seed.customers = sum(1 for e in projections if e.type == "customer.created.v1")
    seed.invoices = len(issued)
    today = dt.date.today()
    messages: list[Envelope] = []
    by_customer: dict[str, list[dict[str, Any]]] = {}
    for inv in issued:
        by_customer.setdefault(inv["customer_id"], []).append(inv)
    for k, inv in enumerate(issued):
        # The reminder's own invoice first, then others of its customer, up to the option.
        others = [o for o in by_customer[inv["customer_id"]] if o is not inv]
        listed = [inv, *others][: args.invoices_per_reminder]
        messages.append(
            Envelope.wrap(
                ReminderDue(
                    customer_id=inv["customer_id"], notice_id=f"not_bench_{inv['invoice_id']}",
                    step_key="7-days-late", step_index=3, channel="email", template="reminder",
                    tone=("friendly", "neutral", "firm")[k % 3], local_date=today,
                    send_at=dt.datetime.combine(today, dt.time(9), dt.UTC),
                    invoices=[ReminderInvoice(
                        invoice_id=o["invoice_id"], number=o["number"],
                        due_date=dt.date.fromisoformat(o["due_date"]),
                        balance=o["balance"], currency=o["currency"],
                        days_overdue=(today - dt.date.fromisoformat(o["due_date"])).days,
                    ) for o in listed],
                    currency=inv["currency"], total_balance=sum(o["balance"] for o in listed),
                    policy_id="pol_default", policy_version=1,
                ),
                source="duewise/dunning",
            )
        )  # fmt: skip
        # The same invoice as if issued now (imported ones send no invoice email), with a
        # line for the PDF: another event id, so notify records its invoice message.
        total = inv["total"]
        line = {"description": "Consulting services", "quantity": 1, "unit_price": total,
                "amount": total, "gl_code": "4000-10"}  # fmt: skip
        again = {**inv, "imported": False, "lines": inv.get("lines") or [line]}
        messages.append(
            Envelope(
                id=str(uuid.uuid4()), source="duewise/invoice", type="invoice.issued.v1",
                time=dt.datetime.now(dt.UTC), key=inv["customer_id"], data=again,
            )
        )  # fmt: skip
    engine = make_engine(Settings(database_url=tp_db).sqlalchemy_url, pool_size=2)
    try:
        sessions = make_sessionmaker(engine)
        envelopes = projections + messages
        for start in range(0, len(envelopes), 200):
            async with sessions() as session, session.begin():
                for env in envelopes[start : start + 200]:
                    await handle(session, env.event(), env)
    finally:
        await engine.dispose()
    conn = await asyncpg.connect(tp_db)
    try:
        await conn.execute("DROP TABLE IF EXISTS bench_seed")
        await conn.execute("CREATE TABLE bench_seed AS SELECT * FROM message")
        await conn.execute("TRUNCATE message, delivery_attempt, outbox")
        kinds = {
            r[0]: r[1]
            for r in await conn.fetch("SELECT kind, count(*) FROM bench_seed GROUP BY kind")
        }
    finally:
        await conn.close()
    seed.reminders, seed.invoice_messages = kinds.get("reminder", 0), kinds.get("invoice", 0)
    seed.seconds = time.perf_counter() - t0
    return seed


# --- sender throughput --------------------------------------------------------------------


@dataclass
class TpRun:
    kind: str
    config: Config
    n: int
    seconds: float = 0.0
    rate: float = 0.0
    statuses: dict[str, int] = field(default_factory=dict)
    caught: int = 0
    mean_bytes: float = 0.0
    cpu: dict[str, float] = field(default_factory=dict)
    load_before: str = ""
    ceiling: float = 0.0

    @property
    def ok(self) -> bool:
        return self.statuses.get("sent", 0) == self.n and self.caught == self.n


_LEFT = "SELECT count(*) FROM message WHERE status IN ('pending', 'sending')"


async def _insert(conn: asyncpg.Connection, kind: str, offset: int, n: int) -> None:
    """Commit `n` seeded messages of `kind` as pending now, and wake the senders."""
    async with conn.transaction():
        await conn.execute(
            "INSERT INTO message SELECT * FROM (SELECT * FROM bench_seed WHERE kind = $1 "
            "ORDER BY id OFFSET $2 LIMIT $3) s",
            kind, offset, n,
        )  # fmt: skip
        await conn.execute("UPDATE message SET not_before = now() WHERE status = 'pending'")
        await conn.execute("SELECT pg_notify('notify_message', '')")


async def _wait_done(
    conn: asyncpg.Connection, procs: Procs, names: list[str], limit: float
) -> bool:
    deadline = time.perf_counter() + limit
    while await conn.fetchval(_LEFT):
        procs.check(*names)
        if time.perf_counter() > deadline:
            return False
        await asyncio.sleep(0.02)
    return True


async def _catcher_mails(http: httpx.AsyncClient) -> list[dict[str, Any]]:
    r = await http.get("/api/messages", timeout=300)
    r.raise_for_status()
    mails: list[dict[str, Any]] = r.json()
    return mails


async def _throughput_run(
    kind: str, n: int, cfg: Config, *, stack: Stack, procs: Procs, tp_db: str, smtp_url: str,
    catcher: httpx.AsyncClient, inv_api: str, roots: dict[str, int | None], warmup: int, log: Log,
) -> TpRun:  # fmt: skip
    run = TpRun(kind, cfg, n, load_before=_loadavg())
    env = _notify_env(stack, database_url(stack.server_url, TP_DB), smtp_url, inv_api, cfg)
    names = [f"notify-sender-{kind}-{cfg.concurrency}-{cfg.pool}-{i}" for i in range(cfg.processes)]
    conn = await asyncpg.connect(tp_db)
    try:
        await conn.execute("TRUNCATE message, delivery_attempt, outbox")
        await catcher.delete("/api/messages")
        pids = {}
        for i, name in enumerate(names):
            pids[f"sender{i + 1}"] = await procs.spawn(name, ["-m", "notify.cli", "sender"], env)
        # Warm-up: imports, templates, fonts, database and SMTP connections, in every process.
        await _insert(conn, kind, n, warmup)
        if not await _wait_done(conn, procs, names, 90):
            raise BenchSetupError(f"warm-up of {cfg.label} not sent in 90 s")
        await conn.execute("TRUNCATE message, delivery_attempt, outbox")
        await catcher.delete("/api/messages")
        await conn.execute("CHECKPOINT")
        await asyncio.sleep(0.5)
        meter = CpuMeter({**roots, **pids})
        meter.start()
        cpu0 = _self_cpu()
        t0 = time.perf_counter()
        await _insert(conn, kind, 0, n)
        done = await _wait_done(conn, procs, names, 180)
        run.seconds = time.perf_counter() - t0
        run.cpu = meter.stop()
        run.cpu["bench (poller)"] = _self_cpu() - cpu0
        if not done:
            log(f"  {cfg.label}: not done after 180 s")
        run.rate = n / run.seconds
        run.statuses = dict(
            await conn.fetch("SELECT status, count(*) FROM message GROUP BY status")  # type: ignore[arg-type]
        )
    finally:
        await conn.close()
        await procs.stop(*names)
    mails = await _catcher_mails(catcher)
    run.caught = len(mails)
    sizes = []
    for m in mails[:: max(1, len(mails) // 5)][:5]:
        sizes.append(len((await catcher.get(f"/api/messages/{m['id']}/raw")).content))
    run.mean_bytes = sum(sizes) / len(sizes) if sizes else 0.0
    await catcher.delete("/api/messages")
    return run


# --- the raw ceiling ----------------------------------------------------------------------


def _ceiling_message(size: int, i: int) -> bytes:
    head = (
        f"From: {FROM}\r\nTo: ap{i}@ceiling.example\r\nSubject: Ceiling {i}\r\n"
        f"Message-ID: <ceiling-{i}@duewise.local>\r\nMIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=us-ascii\r\n\r\n"
    ).encode()
    line = b"x" * 74 + b"\r\n"
    body = line * max(1, (size - len(head)) // len(line))
    return head + body


async def smtp_ceiling(host: str, port: int, *, connections: int, n: int, size: int) -> float:
    """Emails/s of a bare aiosmtplib loop: `connections` reused sessions, `n` messages."""
    from aiosmtplib import SMTP

    messages = [_ceiling_message(size, i) for i in range(n)]
    queue = list(range(n))
    queue.reverse()

    async def worker() -> None:
        smtp = SMTP(hostname=host, port=port, start_tls=False, timeout=30)
        await smtp.connect()
        try:
            while queue:
                i = queue.pop()
                await smtp.sendmail("ar@duewise.local", [f"ap{i}@ceiling.example"], messages[i])
        finally:
            await smtp.quit()

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(connections)))
    return n / (time.perf_counter() - t0)


# --- invoice to inbox ---------------------------------------------------------------------


@dataclass
class Latency:
    rate: float
    duration: float
    config: Config
    posted: int = 0
    errors: int = 0
    error_samples: list[str] = field(default_factory=list)
    achieved_rate: float = 0.0
    post_ms: dict[str, float] = field(default_factory=dict)
    post_service_ms: dict[str, float] = field(default_factory=dict)
    e2e_ms: dict[str, float] = field(default_factory=dict)
    mails: int = 0
    missing: int = 0
    duplicated: int = 0
    strays: int = 0
    unanswered_mails: int = 0  # mails of abandoned POSTs (created after the bench gave up)
    abandoned: int = 0
    drain_s: float = 0.0
    drain_limit_s: float = 0.0
    recorded: dict[str, int] = field(default_factory=dict)  # notify's invoice messages
    unrecorded: int = 0  # posted invoices without a message in notify: lost
    cpu: dict[str, float] = field(default_factory=dict)
    wall: float = 0.0
    load_before: str = ""
    ready_s: float = 0.0


_NUMBER = re.compile(r"\b(NB-\d{6})\b")


async def _latency(
    args: argparse.Namespace, stack: Stack, procs: Procs, smtp_url: str,
    catcher: httpx.AsyncClient, lat_db: str, roots: dict[str, int | None], log: Log,
) -> Latency:  # fmt: skip
    cfg = Config.parse(args.latency_config)
    out = Latency(args.rate, args.duration, cfg)
    env = _notify_env(stack, lat_db, smtp_url, stack.api_url, cfg)
    pids: dict[str, int | None] = {}
    for name in ("relay", "consumer", "sender"):
        pids[f"notify-{name}"] = await procs.spawn(
            f"notify-{name}", ["-m", "notify.cli", name], env
        )
    names = ["notify-relay", "notify-consumer", "notify-sender"]
    today = dt.date.today()
    rng = random.Random(5)
    conn = await asyncpg.connect(database_url(stack.server_url, LAT_DB))
    try:
        async with _client(stack.api_url, stack.admin_token) as http:
            work = stack.work_dir / "latency"
            work.mkdir(exist_ok=True)
            bulk_import._write_customers(work / "AR_Customer.csv", args.latency_customers)
            await bulk_import._import_in_process("customers", work / "AR_Customer.csv", stack, log)
            inv_conn = await asyncpg.connect(stack.invoice_db_url)
            try:
                customers = [
                    dict(r) for r in await inv_conn.fetch(
                        "SELECT id, currency FROM customer ORDER BY external_id")
                ]  # fmt: skip
            finally:
                await inv_conn.close()
            log(f"  {len(customers)} customers imported; waiting for notify's "
                "projection and a warm-up of 20 invoices")  # fmt: skip
            t0 = time.perf_counter()
            warm = [_invoice_body(rng, customers[i], f"WU-{i:06d}", today) for i in range(20)]
            while await conn.fetchval("SELECT count(*) FROM customer") < len(customers):
                procs.check(*names)
                if time.perf_counter() - t0 > 180:
                    raise BenchSetupError("notify's customer projection incomplete after 180 s")
                await asyncio.sleep(0.2)
            await _post_all(http, "/v1/invoices", warm)
            while (await catcher.get("/healthz")).json()["messages"] < len(warm):
                procs.check(*names)
                if time.perf_counter() - t0 > 240:
                    raise BenchSetupError("warm-up invoices not delivered after 240 s")
                await asyncio.sleep(0.2)
            out.ready_s = time.perf_counter() - t0
            await catcher.delete("/api/messages")
            await asyncio.sleep(1.0)

            log(f"invoice-to-inbox: POST /v1/invoices at {args.rate:.0f}/s for "
                f"{args.duration:.0f} s (open loop)")  # fmt: skip
            out.load_before = _loadavg()
            responded: dict[str, float] = {}  # invoice number -> wall time of the 201
            ids: dict[str, str] = {}
            post_s: list[float] = []
            service_s: list[float] = []
            total = int(args.rate * args.duration)
            slots = asyncio.Semaphore(64)
            others = customers[20:] or customers

            async def one(i: int, at: float) -> None:
                number = f"NB-{i:06d}"
                body = _invoice_body(rng, others[i % len(others)], number, today)
                async with slots:
                    sent = time.perf_counter()
                    try:
                        r = await http.post(
                            "/v1/invoices", json=body,
                            headers={"Idempotency-Key": uuid.uuid4().hex},
                        )  # fmt: skip
                    except httpx.HTTPError as exc:
                        out.errors += 1
                        out.error_samples.append(f"{type(exc).__name__}: {exc}"[:200])
                        return
                    if r.status_code != 201:
                        out.errors += 1
                        out.error_samples.append(f"{r.status_code} {r.text[:200]}")
                        return
                    responded[number] = time.time()
                    ids[number] = r.json()["id"]
                    post_s.append(time.perf_counter() - at)
                    service_s.append(time.perf_counter() - sent)

            meter = CpuMeter({**roots, **pids})
            meter.start()
            cpu0 = _self_cpu()
            start = time.perf_counter() + 0.05
            tasks = []
            for i in range(total):
                at = start + i / args.rate
                delay = at - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                tasks.append(asyncio.create_task(one(i, at)))
            out.achieved_rate = total / (time.perf_counter() - start)
            # Bounded: what the invoice API has not answered `drain` s after the schedule ended
            # is abandoned and counted as a POST error.
            _, pending = await asyncio.wait(tasks, timeout=args.drain)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            out.abandoned = len(pending)
            out.errors += len(pending)
            out.posted = len(responded)
            out.post_ms = percentiles(post_s)
            out.post_service_ms = percentiles(service_s)
            t_end = time.perf_counter()
            out.drain_limit_s = args.drain
            while (await catcher.get("/healthz")).json()["messages"] < out.posted:
                procs.check(*names)
                if time.perf_counter() - t_end > args.drain:
                    log(f"  not all mails in {args.drain:.0f} s after the last POST; stopping")
                    break
                await asyncio.sleep(0.1)
            out.drain_s = time.perf_counter() - t_end
            out.wall = time.perf_counter() - start
            out.cpu = meter.stop()
            out.cpu["bench (load, poll)"] = _self_cpu() - cpu0
            await asyncio.sleep(1.0)  # anything sent twice arrives now
            await procs.stop(*names)
            rows = await conn.fetch(
                "SELECT invoice_ids->>0 AS invoice_id, status FROM message "
                "WHERE kind = 'invoice' AND invoice_ids->>0 = ANY($1::text[])",
                list(ids.values()),
            )
            for r in rows:
                out.recorded[r["status"]] = out.recorded.get(r["status"], 0) + 1
            out.unrecorded = len(set(ids.values()) - {r["invoice_id"] for r in rows})
    finally:
        await conn.close()
    mails = await _catcher_mails(catcher)
    out.mails = len(mails)
    got: dict[str, list[float]] = {}
    for m in mails:
        match = _NUMBER.search(m["subject"])
        if match is None:
            out.strays += 1
            continue
        received = dt.datetime.fromisoformat(m["received"]).timestamp()
        got.setdefault(match.group(1), []).append(received)
    # Not delivered within the bounded wait counts as slower than anything measured.
    e2e = [min(got[k]) - t if k in got else float("inf") for k, t in responded.items()]
    out.e2e_ms = percentiles(e2e)
    out.missing = sum(1 for k in responded if k not in got)
    out.duplicated = sum(1 for v in got.values() if len(v) > 1)
    out.unanswered_mails = sum(1 for k in got if k not in responded)
    return out


# --- the run ------------------------------------------------------------------------------


async def run(args: argparse.Namespace, console: Console) -> int:
    log = Log()
    stack = Stack(work_dir=make_work_dir(), keep_work_dir=args.keep)
    if args.profile is not None:
        args.profile.mkdir(parents=True, exist_ok=True)
    procs = Procs(stack.log_dir, args.profile.absolute() if args.profile else None)
    configs = [Config.parse(s) for s in args.configs.split(",")]
    title = f"duewise notify bench, {now_utc()}"
    load_start = _loadavg()
    runs: list[TpRun] = []
    ceilings: dict[tuple[str, int], float] = {}
    lat: Latency | None = None
    seed = Seed()
    try:
        async with asyncio.timeout(args.max_minutes * 60):
            await stack.start(log=log)
            log(stack.database_note)
            await ensure_topics(stack.bootstrap, all_topics())
            smtp_port, http_port = free_port(), free_port()
            await procs.spawn("catcher", [
                "-m", "duewise_dev.catcher", "--smtp-port", str(smtp_port),
                "--http-port", str(http_port), "--capacity", "20000"], dict(os.environ),
            )  # fmt: skip
            catcher_url = f"http://{LOCALHOST}:{http_port}"
            smtp_url = f"smtp://{LOCALHOST}:{smtp_port}"
            await _wait_http(f"{catcher_url}/healthz", procs, "catcher")
            log(f"catcher: SMTP {smtp_url}, HTTP {catcher_url}")

            # Databases: notify's (latency) and a throughput one; a second invoice database.
            for name in (LAT_DB, TP_DB, INV_TP_DB):
                await ensure_database(stack.server_url, name)
            lat_db, tp_db = (database_url(stack.server_url, n) for n in (LAT_DB, TP_DB))
            inv_db = database_url(stack.server_url, INV_TP_DB)
            for name, url in (("lat", lat_db), ("tp", tp_db)):
                await procs.run_once(f"notify-migrate-{name}", ["-m", "notify.cli", "migrate"],
                                     {**os.environ, "NOTIFY_DATABASE_URL": url})  # fmt: skip
            inv_port = free_port()
            inv_api = f"http://{LOCALHOST}:{inv_port}"
            inv_env = {
                **os.environ, "INVOICE_DATABASE_URL": inv_db, "INVOICE_PORT": str(inv_port),
                "INVOICE_HOST": LOCALHOST, "KAFKA_BOOTSTRAP_SERVERS": stack.bootstrap,
                "DUEWISE_ADMIN_TOKEN": stack.admin_token, "PYTHONUNBUFFERED": "1",
            }  # fmt: skip
            await procs.run_once("invoice-tp-migrate", ["-m", "invoice.cli", "migrate"], inv_env)
            await procs.spawn("invoice-tp-api", ["-m", "invoice.cli", "api"], inv_env)
            log("seeding the throughput data (second invoice database, notify projections)")
            seed = await _seed_throughput(args, stack, inv_db, tp_db, log)
            await _wait_http(f"{inv_api}/readyz", procs, "invoice-tp-api")
            log(f"  seeded in {seed.seconds:.0f}s: {seed.reminders:,} reminders, "
                f"{seed.invoice_messages:,} invoice messages recorded")  # fmt: skip

            roots: dict[str, int | None] = {
                "postgres": stack.postgres_pid(), "catcher": procs.running["catcher"].pid,
                "invoice-api (last look)": procs.running["invoice-tp-api"].pid,
            }  # fmt: skip
            async with httpx.AsyncClient(base_url=catcher_url, timeout=30) as catcher:
                kw: dict[str, Any] = dict(
                    stack=stack, procs=procs, tp_db=tp_db, smtp_url=smtp_url, catcher=catcher,
                    inv_api=inv_api, roots=roots, warmup=args.warmup, log=log,
                )  # fmt: skip
                for cfg in configs:
                    log(f"sender throughput, {args.reminders:,} reminders: {cfg.label}")
                    r = await _throughput_run("reminder", args.reminders, cfg, **kw)
                    log(f"  {r.rate:,.0f} emails/s in {r.seconds:.1f}s; {r.statuses}; "
                        f"{r.caught} caught; CPU {share(r.cpu, r.seconds)}")  # fmt: skip
                    runs.append(r)
                best = max(runs, key=lambda r: r.rate).config
                for cfg in dict.fromkeys([configs[0], best]):
                    log(f"sender throughput, {args.invoice_mails:,} invoices + PDF: {cfg.label}")
                    r = await _throughput_run("invoice", args.invoice_mails, cfg, **kw)
                    log(f"  {r.rate:,.0f} emails/s in {r.seconds:.1f}s; {r.statuses}; "
                        f"{r.caught} caught; CPU {share(r.cpu, r.seconds)}")  # fmt: skip
                    runs.append(r)

                for r in runs:
                    key = (r.kind, r.config.connections)
                    if key not in ceilings:
                        size = int(r.mean_bytes) or 8000
                        n = r.n
                        log(f"raw ceiling: bare aiosmtplib, {key[1]} connections, {n:,} x "
                            f"{size:,} B ({r.kind}-sized)")  # fmt: skip
                        rates = []
                        for _ in range(args.ceiling_runs):
                            rate = await smtp_ceiling(
                                LOCALHOST, smtp_port, connections=key[1], n=n, size=size
                            )
                            rates.append(rate)
                            await catcher.delete("/api/messages")
                        ceilings[key] = max(rates)
                        log(f"  {ceilings[key]:,.0f} emails/s (runs: "
                            f"{', '.join(f'{x:,.0f}' for x in rates)})")  # fmt: skip
                    r.ceiling = ceilings[key]

                await procs.stop("invoice-tp-api")
                if not args.skip_latency:
                    lat_roots: dict[str, int | None] = {
                        **{k.removeprefix("invoice-"): v
                           for k, v in stack.process_pids().items()},
                        "postgres": stack.postgres_pid(), "tansu": stack.broker_pid(),
                        "catcher": procs.running["catcher"].pid,
                    }  # fmt: skip
                    lat = await _latency(args, stack, procs, smtp_url, catcher, lat_db,
                                         lat_roots, log)  # fmt: skip
                    log(f"  POST -> SMTP accepted p50 {lat.e2e_ms.get('p50', 0):.0f} ms, p99 "
                        f"{lat.e2e_ms.get('p99', 0):.0f} ms; {lat.missing} missing, "
                        f"{lat.duplicated} duplicated")  # fmt: skip
    except BaseException:
        stack.keep_work_dir = True
        print(f"bench failed; data and logs kept in {stack.work_dir}", file=sys.stderr)
        raise
    finally:
        log("stopping")
        await procs.stop()
        await stack.stop()

    rows = _rows(runs, lat)
    notes = _notes(args, stack, seed, runs, lat, load_start)
    print_table(console, title, rows, notes)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.with_suffix(".md").write_text(markdown(title, rows, notes))
    results = {
        "title": title, "machine": machine(), "load_average_start": load_start,
        "database": stack.database_note, "seed": asdict(seed),
        "throughput": [{**asdict(r), "config": asdict(r.config)} for r in runs],
        "ceilings": [{"kind": k, "connections": c, "emails_per_s": v}
                     for (k, c), v in ceilings.items()],
        "latency": asdict(lat) if lat is not None else None,
        "rows": [asdict(r) for r in rows], "notes": notes,
    }  # fmt: skip
    RESULTS.with_suffix(".json").write_text(json.dumps(results, indent=2, default=str))
    console.print(f"\nwritten to {RESULTS.with_suffix('.json')} and .md")
    return 0


def _rows(runs: list[TpRun], lat: Latency | None) -> list[Row]:
    rows: list[Row] = []
    best = max((r for r in runs if r.kind == "reminder"), key=lambda r: r.rate, default=None)
    for r in runs:
        what = (
            "reminders (last looks: 2 GETs each, whatever the invoices listed)"
            if r.kind == "reminder"
            else "invoices + PDF"
        )
        is_best = r is best
        rows.append(Row(
            f"sender: {r.n:,} {what}; {r.config.label}" + (" (best)" if is_best else ""),
            f"{r.rate:,.0f} emails/s",
            f"{r.ceiling:,.0f} /s ({r.config.connections} conn)",
            pct(r.rate / r.ceiling) if r.ceiling else "",
            f">= {THROUGHPUT_TARGET:.0f} emails/s" if r.kind == "reminder" else
            f"{r.seconds:.1f} s; {r.mean_bytes / 1024:.0f} KB/mail",
            verdict(r.rate >= THROUGHPUT_TARGET and r.ok) if r.kind == "reminder" else
            verdict(r.ok),
        ))  # fmt: skip
        if not r.ok:
            rows.append(Row("  statuses / caught", f"{r.statuses} / {r.caught}", verdict="MISS"))
    if lat is not None:
        e = lat.e2e_ms
        ok = not lat.missing and not lat.duplicated and not lat.errors
        lost = lat.unrecorded
        bound = f"> {lat.drain_limit_s:.0f} s after the last POST"

        def ms(key: str) -> str:
            v = e.get(key, float("inf"))
            return f"{v:,.0f}" if v != float("inf") else f"({bound})"

        rows += [
            Row(f"invoice-to-inbox @ {lat.rate:.0f}/s x {lat.duration:.0f} s: POST 201 -> "
                "SMTP accepted, p50 / p99 / max (ms)",
                f"{ms('p50')} / {ms('p99')} / {ms('max')}",
                target=f"p99 < {P99_TARGET_MS:.0f} ms",
                verdict=verdict(e.get("p99", float("inf")) < P99_TARGET_MS and ok)),
            Row("  invoices answered 201 / their mails / not caught in time / duplicated",
                f"{lat.posted:,} / {lat.mails - lat.unanswered_mails - lat.strays:,} / "
                f"{lat.missing} / {lat.duplicated}",
                target=f"exactly one mail each (+{lat.unanswered_mails} mails of abandoned "
                "POSTs)", verdict=verdict(not lat.missing and not lat.duplicated)),
            Row("  nothing lost: invoices answered 201 without a message in notify",
                f"{lost}", target=f"0; notify's invoice messages: {lat.recorded}; "
                f"{lat.errors} POST errors ({lat.abandoned} abandoned)",
                verdict=verdict(lost == 0 and lat.duplicated == 0)),
            Row("  POST /v1/invoices p50 / p99: from scheduled time, from send",
                f"{lat.post_ms.get('p50', 0):,.0f} / {lat.post_ms.get('p99', 0):,.0f} ms, "
                f"{lat.post_service_ms.get('p50', 0):,.0f} / "
                f"{lat.post_service_ms.get('p99', 0):,.0f} ms",
                target=f"achieved {lat.achieved_rate:.1f} invoices/s"),
        ]  # fmt: skip
    return rows


def _notes(
    args: argparse.Namespace, stack: Stack, seed: Seed, runs: list[TpRun], lat: Latency | None,
    load_start: str,
) -> list[str]:  # fmt: skip
    notes = [
        f"Machine: {machine()}; load average (1/5/15 min) {load_start} at the start, "
        f"{_loadavg()} at the end. The machine is shared: other work ran beside this bench.",
        f"{stack.database_note}; broker: {stack.broker_origin}. All traffic over loopback. "
        "Mail catcher: `python -m duewise_dev.catcher` (aiosmtpd) as its own process.",
        f"Throughput data: {seed.customers:,} customers and {seed.invoices:,} open invoices "
        "imported (the invoice service's importer, generated Sage 100 CSVs, en-US, one "
        "billing contact) into a second invoice database, served by a second invoice API "
        "process (no relay) that answers the last look; notify's projections built from that "
        "service's outbox events with notify.handlers.handle, as the consumer would; "
        f"{seed.reminders:,} reminder.due.v1 (one invoice each, ~"
        f"{seed.invoices / max(1, seed.customers):.0f} per customer) and "
        f"{seed.invoice_messages:,} invoice messages (the same invoice.issued.v1 payloads with "
        "imported=false and one line, as if issued now) recorded by the same handler "
        f"(seeding took {seed.seconds:.0f} s, not timed).",
        "Sender runs: `python -m notify.cli sender` process(es) with NOTIFY_SENDER_CONCURRENCY "
        "and NOTIFY_SMTP_POOL_SIZE as shown (batch 100, the CLI's DB pool); "
        f"{args.warmup} messages sent first as warm-up; then N pending messages committed in one "
        "transaction (with the NOTIFY wake-up), timed until none is pending or sending (20 ms "
        "polls): claim, last look, render, SMTP, mark with its outbox event. The last look is "
        "REAL: one GET /v1/invoices?id=… before rendering and one inside the SMTP transaction "
        f"per reminder (each listing up to {args.invoices_per_reminder} of its customer's "
        "invoices) to that invoice API process. Every "
        "message must end `sent` and be caught.",
        "Raw ceiling: a bare aiosmtplib loop in the bench process (asyncio, as the sender), "
        "the same number of reused connections as the senders' pools together, the same "
        "number of pre-built plain messages of the mean size caught for that kind, to the "
        f"same catcher; best of {args.ceiling_runs}, measured after the sender runs.",
    ]
    for r in runs:
        notes.append(
            f"CPU in cores during {r.kind} x {r.n:,}, {r.config.label} ({r.seconds:.1f} s; "
            f"load before {r.load_before}): {share(r.cpu, r.seconds or 1)}; statuses "
            f"{r.statuses}."
        )
    if lat is not None:
        per_customer = lat.rate * lat.duration / max(1, args.latency_customers - 20)
        notes += [
            f"Invoice-to-inbox: the invoice API + relay (bench/stack.py), Tansu, and notify's "
            f"relay, consumer and one sender ({lat.config.label}) as subprocesses; "
            f"{args.latency_customers:,} customers imported first (the invoice service's "
            "importer, Sage 100 CSV, en-US), "
            f"then 20 warm-up invoices ({lat.ready_s:.0f} s until their mails arrived). "
            f"Open loop from the bench process: {lat.posted:,} POSTs at {lat.rate:.0f}/s, "
            f"customers round robin (~{per_customer:.0f} "
            "invoices each, under the 10 emails/day limit). Latency = the "
            "catcher's `received` time (set when it answers 250 to the data) minus the wall "
            "time the 201 came back; matched by the invoice number in the subject. "
            f"Waited {lat.drain_s:.1f} s after the last POST for the mails (bound "
            f"{lat.drain_limit_s:.0f} s); undelivered ones count as slower than that.",
            f"Load before the latency run: {lat.load_before}. CPU in cores over "
            f"{lat.wall:.0f} s: {share(lat.cpu, lat.wall or 1)}.",
        ]
        if lat.abandoned:
            notes.append(
                f"{lat.abandoned:,} POSTs not answered {lat.drain_limit_s:.0f} s after the "
                "schedule ended were abandoned (counted as POST errors, not as lost mail)."
            )
        if lat.error_samples:
            notes.append(f"POST errors: {lat.error_samples[:3]}")
    return notes


def main(argv: list[str] | None = None) -> int:
    return run_bench(run, _args(argv), width=160)


if __name__ == "__main__":
    sys.exit(main())
