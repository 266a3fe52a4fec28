"""The fault suite's own duewise: a PostgreSQL, a broker and service processes it can hurt.

`duewise-dev run` supervises its children and stops everything when one dies; a fault test
needs the opposite: SIGKILL one process, freeze the broker or restart the database, and
then start again what it killed. So this module starts the same pieces the devstack starts
(EmbeddedPostgres, TansuBroker, each service's CLI with the devstack's environment) as
handles the test holds. Everything listens on free ports, beside any `make run`.

The processes are the producer path and every consumer of invoice.events: invoice's API
and relay, and the dunning, risk and notify consumers. The effect each consumer has for one
invoice.issued is counted where a second application would show as a second row or be
refused by a key (see `issued_effects`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from aiokafka import AIOKafkaConsumer, TopicPartition
from duewise_dev._util import LOCALHOST, free_port, log_tail
from duewise_dev.broker import TansuBroker, ensure_topics
from duewise_dev.postgres import EmbeddedPostgres, database_url, ensure_database
from duewise_dev.services import SERVICES, Service, all_topics
from duewise_events import topic_reader

TOKEN = "faults-admin-token-0123456789abcdef"
ISSUED = "invoice.issued.v1"
CUSTOMER_CREATED = "customer.created.v1"
# What each consumer of invoice.events writes for one InvoiceIssued: a query giving
# (invoice id, how many times) for the ids in $1. Risk's receivables ledger has an identity
# key, so a second application would be a second row; dunning's projection and notify's
# invoice mail are keyed by the invoice, so there a count shows that the effect happened
# (a second application would be skipped by the handler itself, inbox or not).
ISSUED_EFFECTS: dict[str, str] = {
    "dunning": "SELECT id, count(*) FROM invoice WHERE id = ANY($1) GROUP BY id",
    "risk": (
        "SELECT invoice_id, count(*) FROM ar_movement"
        " WHERE kind = 'issued' AND invoice_id = ANY($1) GROUP BY invoice_id"
    ),
    "notify": (
        "SELECT substr(idempotency_key, 9), count(*) FROM message"
        " WHERE idempotency_key = ANY(SELECT 'invoice:' || x FROM unnest($1::text[]) x)"
        " GROUP BY 1"
    ),
}
CONSUMERS = tuple(ISSUED_EFFECTS)
# The processes a scenario runs, by devstack name.
PROCESSES = ("invoice-api", "invoice-relay", *(f"{c}-consumer" for c in CONSUMERS))


@dataclass
class FaultStack:
    """Infrastructure and service processes on free ports under `base`, all killable."""

    base: Path
    invoice_port: int = field(default_factory=free_port)
    pg: EmbeddedPostgres = field(init=False)
    broker: TansuBroker = field(init=False)
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    metrics_ports: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.t0 = time.monotonic()
        # Durable (fsync, synchronous commit): the database is crashed on purpose, and a
        # commit acknowledged without its WAL on disk would be lost with the server, which
        # is a property of that setting, not of duewise.
        self.pg = EmbeddedPostgres(
            self.base / "pg", free_port(), durable=True, log_path=self.base / "postgres.log"
        )
        self.broker = TansuBroker(free_port(), log_path=self.base / "tansu.log")

    # --- infrastructure ---------------------------------------------------------------

    def note(self, what: str) -> None:
        """A progress line with the seconds since the stack was made (seen with -s)."""
        print(f"[faults +{time.monotonic() - self.t0:6.1f}s] {what}", flush=True)

    async def start_infra(self) -> None:
        """PostgreSQL, the broker and its topics, each service's database, migrated."""
        await asyncio.to_thread(self.pg.start)
        await asyncio.to_thread(self.broker.start)
        await ensure_topics(self.broker.bootstrap, all_topics(SERVICES))
        for service in SERVICES:
            await ensure_database(self.pg.url, service.database)
        self.note("postgres, broker and topics up; migrating")
        migrations = [
            asyncio.create_subprocess_exec(
                *s.migrate,
                env=self._env(s),
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
            )
            for s in SERVICES
        ]
        for service, proc in zip(SERVICES, await asyncio.gather(*migrations), strict=True):
            out, _ = await proc.communicate()
            assert proc.returncode == 0, f"{service.name} migrate failed:\n{out.decode()}"
        self.note("migrated")

    def stop(self) -> None:
        """Every process, then the broker, then PostgreSQL (also after a failed test)."""
        for name in list(self.procs):
            self.kill(name)
        with contextlib.suppress(ProcessLookupError):  # never leave it frozen
            if self.broker._proc is not None:
                os.kill(self.broker._proc.pid, signal.SIGCONT)
        self.broker.stop()
        self.pg.stop()
        # The logs stay for a post-mortem; the database files are the bulk.
        shutil.rmtree(self.pg.data_dir, ignore_errors=True)

    def crash_postgres(self) -> None:
        """SIGKILL the server and every backend (its process group): no shutdown at all; the
        next start recovers from the write-ahead log."""
        proc = self.pg._proc
        assert proc is not None
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
        self.pg._proc = None

    def freeze_broker(self) -> None:
        """SIGSTOP: the broker keeps its sockets and data but answers nothing (an outage
        where connections hang, the harder kind for clients)."""
        assert self.broker._proc is not None
        os.kill(self.broker._proc.pid, signal.SIGSTOP)

    def thaw_broker(self) -> None:
        assert self.broker._proc is not None
        os.kill(self.broker._proc.pid, signal.SIGCONT)

    # --- service processes -------------------------------------------------------------

    def start(self, name: str, **extra_env: str) -> None:
        """Start one process (`invoice-api`, `risk-consumer`, ...) with its devstack argv."""
        assert name not in self.procs or self.procs[name].poll() is not None, name
        service, process = _find(name)
        env = {**self._env(service), **extra_env}
        if process.port is None:  # a worker: its /livez and /readyz on a port of its own
            self.metrics_ports[name] = free_port()
            env["METRICS_PORT"] = str(self.metrics_ports[name])
        log = (self.base / f"{name}.log").open("ab")
        with log:
            self.procs[name] = subprocess.Popen(
                process.argv,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                process_group=0,
            )

    def kill(self, name: str) -> None:
        """SIGKILL the process's whole group and reap it."""
        proc = self.procs.pop(name, None)
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)

    def dead(self) -> list[str]:
        """Processes that exited without being killed by the test: each with its log tail."""
        return [
            f"{name} exited with {p.returncode}:\n{self.log(name)}"
            for name, p in self.procs.items()
            if p.poll() is not None
        ]

    def log(self, name: str) -> str:
        return log_tail(self.base / f"{name}.log", 25)

    async def start_all(self) -> None:
        """Start whatever of PROCESSES is not running and wait until the API answers."""
        for name in PROCESSES:
            if name not in self.procs or self.procs[name].poll() is not None:
                self.start(name)
        # Generous: five Python processes importing their frameworks at once take a
        # minute or more on a loaded two-core machine.
        await self.api_ready(timeout_s=240)
        self.note("processes started; the API answers")

    async def api_ready(self, timeout_s: float = 60.0) -> float:
        """Wait until the invoice API answers /healthz; seconds it took."""
        started = time.monotonic()
        async with httpx.AsyncClient(timeout=1.0) as http:

            async def up() -> bool:
                with contextlib.suppress(httpx.HTTPError):
                    return (await http.get(f"{self.invoice_url}/healthz")).status_code == 200
                return False

            await self.until(up, timeout_s, "the invoice API answers /healthz")
        return time.monotonic() - started

    async def workers_ready(self, timeout_s: float) -> dict[str, str]:
        """Until every running worker's /readyz answers 200 (its loop did its work on its
        last round: connected, leading); what each answered last, on timeout too."""
        last: dict[str, str] = {}
        deadline = time.monotonic() + timeout_s
        async with httpx.AsyncClient(timeout=2.0) as http:
            while True:
                for name, port in self.metrics_ports.items():
                    if name not in self.procs or last.get(name) == "200":
                        continue
                    try:
                        r = await http.get(f"http://{LOCALHOST}:{port}/readyz")
                        last[name] = "200" if r.status_code == 200 else f"{r.status_code} {r.text}"
                    except httpx.HTTPError as exc:
                        last[name] = repr(exc)
                if all(last.get(n) == "200" for n in self.metrics_ports if n in self.procs):
                    return last
                if time.monotonic() > deadline:
                    return last
                await asyncio.sleep(0.25)

    # --- observing ---------------------------------------------------------------------

    @property
    def invoice_url(self) -> str:
        return f"http://{LOCALHOST}:{self.invoice_port}"

    def db_url(self, service: str) -> str:
        return database_url(self.pg.url, f"duewise_{service}")

    async def fetch(self, service: str, sql: str, *args: Any) -> list[asyncpg.Record]:
        """One query on the service's database, on a connection of its own (the server may
        have been restarted since the last one)."""
        conn = await asyncpg.connect(self.db_url(service))
        try:
            return list(await conn.fetch(sql, *args))
        finally:
            await conn.close()

    async def until(
        self, check: Callable[[], Awaitable[bool]], timeout_s: float, what: str
    ) -> None:
        """Poll `check` until true; fail naming `what` (and any process that died)."""
        deadline = time.monotonic() + timeout_s
        while not await check():
            assert not self.dead(), "\n".join(self.dead())
            assert time.monotonic() < deadline, f"not within {timeout_s:.0f}s: {what}"
            await asyncio.sleep(0.25)

    async def unpublished(self) -> int:
        rows = await self.fetch("invoice", "SELECT count(*) FROM outbox WHERE published_at IS NULL")
        return int(rows[0][0])

    async def event_ids(self, type_: str, keys: Iterable[str]) -> list[str]:
        """Outbox event ids of `type_` for the given customer ids (the record key)."""
        rows = await self.fetch(
            "invoice",
            "SELECT event_id FROM outbox WHERE type = $1 AND key = ANY($2) ORDER BY id",
            type_,
            list(keys),
        )
        return [r[0] for r in rows]

    async def inboxed(self, consumer: str, event_ids: Sequence[str]) -> int:
        rows = await self.fetch(
            consumer, "SELECT count(*) FROM inbox WHERE event_id = ANY($1)", list(event_ids)
        )
        return int(rows[0][0])

    async def wait_consumed(self, event_ids: Sequence[str], timeout_s: float = 60.0) -> None:
        """Until every consumer has recorded every one of `event_ids` in its inbox."""

        async def done() -> bool:
            counts = [await self.inboxed(c, event_ids) for c in CONSUMERS]
            return all(n == len(event_ids) for n in counts)

        await self.until(done, timeout_s, f"{len(event_ids)} events in every consumer's inbox")

    async def issued_effects(self, invoice_ids: Sequence[str]) -> dict[str, dict[str, int]]:
        """Per consumer: invoice id -> how many effects its InvoiceIssued had there."""
        out: dict[str, dict[str, int]] = {}
        for consumer, sql in ISSUED_EFFECTS.items():
            rows = await self.fetch(consumer, sql, list(invoice_ids))
            out[consumer] = {r[0]: int(r[1]) for r in rows}
        return out

    async def wait_effects(self, invoice_ids: Sequence[str], timeout_s: float) -> float | None:
        """Until every consumer shows an effect for every invoice: seconds it took, or None
        after `timeout_s` (the caller's ledger row then counts what is missing)."""
        started = time.monotonic()
        while time.monotonic() - started < timeout_s:
            effects = await self.issued_effects(invoice_ids)
            if all(len(per) == len(invoice_ids) for per in effects.values()):
                return time.monotonic() - started
            assert not self.dead(), "\n".join(self.dead())
            await asyncio.sleep(0.25)
        missing = {c: len(invoice_ids) - len(per) for c, per in effects.items()}
        print(f"effects still missing after {timeout_s:.0f}s: {missing}")
        for consumer in CONSUMERS:
            print(f"--- {consumer}-consumer log ---\n{self.log(f'{consumer}-consumer')}")
        return None

    async def wait_caught_up(self, timeout_s: float = 60.0) -> None:
        """Until every consumer group has committed the end of invoice.events: every record
        on it, duplicates included, has been through the consumer (applied or absorbed)."""
        topic = "invoice.events"

        async def done() -> bool:
            ends = await topic_reader.end_offsets(self.broker.bootstrap, topic)
            tps = [TopicPartition(topic, p) for p in sorted(ends)]
            for group in CONSUMERS:
                committed = await self._committed(group, tps)
                if any(committed[tp] < ends[tp.partition] for tp in tps):
                    return False
            return True

        await self.until(done, timeout_s, "every consumer group at the end of invoice.events")

    async def _committed(self, group: str, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        # Assigned, not subscribed: the group's committed offsets without joining it. (The
        # admin client's OffsetFetch is not decoded against this Tansu build.)
        reader = AIOKafkaConsumer(
            bootstrap_servers=self.broker.bootstrap, group_id=group, enable_auto_commit=False
        )
        await reader.start()
        try:
            reader.assign(tps)
            return {tp: (await reader.committed(tp)) or 0 for tp in tps}
        finally:
            await reader.stop()

    def _env(self, service: Service) -> dict[str, str]:
        env = {
            **os.environ,
            **service.env(
                server_url=self.pg.url,
                kafka_bootstrap=self.broker.bootstrap,
                admin_token=TOKEN,
            ),
        }
        if service.name == "invoice":
            env["INVOICE_PORT"] = str(self.invoice_port)
        # The other APIs are not run here; nothing the consumers do calls them.
        return env


def _find(name: str) -> tuple[Service, Any]:
    for service in SERVICES:
        for process in service.processes:
            if process.name == name:
                return service, process
    raise KeyError(name)


# --- the invoice API, as a client of it ----------------------------------------------------


def client(stack: FaultStack, timeout_s: float = 10.0) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=stack.invoice_url,
        headers={"Authorization": f"Bearer {TOKEN}"},
        timeout=timeout_s,
    )


def customer_body(tag: str, n: int) -> dict[str, Any]:
    return {
        "name": f"Fault {tag} {n}",
        "external_id": f"{tag}-C{n}",
        "currency": "EUR",
        "timezone": "Europe/Berlin",
        "country": "DE",
        "locale": "de-DE",
        "payment_terms_days": 30,
        "contacts": [{"name": "AP", "email": f"ap-{tag}-{n}@example.com", "role": "billing"}],
    }


def invoice_body(customer_id: str, key: str) -> dict[str, Any]:
    """An invoice whose number and external id are the request's Idempotency-Key."""
    return {
        "customer_id": customer_id,
        "number": key,
        "external_id": key,
        "issue_date": "2026-11-01",
        "due_date": "2026-12-01",
        "currency": "EUR",
        "lines": [{"description": "Service", "quantity": 1, "unit_price": 10000}],
    }


async def customers(stack: FaultStack, tag: str, n: int) -> list[str]:
    """`n` new customers, created and known to every consumer (so invoices take effect)."""
    ids: list[str] = []
    async with client(stack) as http:
        for i in range(n):
            r = await http.post(
                "/v1/customers",
                json=customer_body(tag, i),
                headers={"Idempotency-Key": f"{tag}-C{i}"},
            )
            assert r.status_code == 201, r.text
            ids.append(r.json()["id"])
    await stack.wait_consumed(await stack.event_ids(CUSTOMER_CREATED, ids), timeout_s=90)
    return ids


async def issue_until_created(
    http: httpx.AsyncClient,
    customer_id: str,
    key: str,
    give_up_s: float = 60.0,
    failures: list[str] | None = None,
) -> tuple[str, int]:
    """POST the invoice under `key` until a 201, as a client with an Idempotency-Key does:
    through connection errors and 5xx, with the same key. (invoice id, attempts).

    Each failed attempt is described in `failures` ("503 application/problem+json
    database-unavailable retry-after=1", "no answer: ReadTimeout").
    """
    deadline = time.monotonic() + give_up_s
    attempts = 0
    while True:
        attempts += 1
        try:
            r = await http.post(
                "/v1/invoices",
                json=invoice_body(customer_id, key),
                headers={"Idempotency-Key": key},
            )
            if r.status_code == 201:
                return str(r.json()["id"]), attempts
            assert r.status_code >= 500, f"{key}: {r.status_code} {r.text}"
            if failures is not None:
                failures.append(_described(r))
        except httpx.TransportError as exc:
            if failures is not None:
                failures.append(f"no answer: {type(exc).__name__}")
        assert time.monotonic() < deadline, f"{key}: no 201 within {give_up_s:.0f}s"
        await asyncio.sleep(0.2)


def _described(r: httpx.Response) -> str:
    kind = r.headers.get("content-type", "")
    problem = r.json().get("type", "").rsplit("/", 1)[-1] if "json" in kind else r.text[:40]
    return f"{r.status_code} {kind} {problem} retry-after={r.headers.get('retry-after')}"


async def pairing(stack: FaultStack, keys: Sequence[str]) -> tuple[dict[str, list[str]], int]:
    """For the invoices of `keys` (by external id): invoice id -> its invoice.issued outbox
    event ids; and how many such outbox rows name an invoice that does not exist."""
    invoices = await stack.fetch(
        "invoice", "SELECT id FROM invoice WHERE external_id = ANY($1)", list(keys)
    )
    ids = [r[0] for r in invoices]
    rows = await stack.fetch(
        "invoice",
        "SELECT payload->>'invoice_id', event_id FROM outbox"
        " WHERE type = $1 AND payload->>'number' = ANY($2)",
        ISSUED,
        list(keys),
    )
    pairs: dict[str, list[str]] = {i: [] for i in ids}
    orphans = 0
    for invoice_id, event_id in rows:
        if invoice_id in pairs:
            pairs[invoice_id].append(event_id)
        else:
            orphans += 1
    return pairs, orphans
