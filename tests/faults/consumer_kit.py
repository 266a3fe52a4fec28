"""Shared plumbing of the consumer-side fault scenarios (3, 6, 7): a broker of their own, a
scratch database per service, the services' real processes (SIGKILL-able), and events put
straight onto the topics with the library's envelope.

Each scenario gets its own Tansu broker so that its consumer groups read only its own records
(the session's broker is shared with every other test) and a rebuild/fold of a topic sees
exactly the scenario's input.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from email import policy as email_policy
from email.parser import BytesParser
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiokafka import AIOKafkaProducer
from duewise_dev._util import free_port
from duewise_dev.broker import TansuBroker, ensure_topics
from duewise_dev.postgres import scratch_database
from duewise_dev.services import all_topics
from duewise_events.catalogue import Event
from duewise_events.envelope import Envelope
from duewise_service.urls import plain_url

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "faults-admin-token-0123456789abcdef"
SOURCES = {
    "invoice.events": "duewise/invoice",
    "dunning.events": "duewise/dunning",
    "risk.events": "duewise/risk",
    "notify.events": "duewise/notify",
}


@pytest.fixture(scope="module")
def own_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Tansu broker for this module only, with every service topic and its DLT."""
    base = tmp_path_factory.mktemp("faults-broker")
    for attempt in range(3):
        broker = TansuBroker(free_port(), log_path=base / "tansu.log")
        try:
            broker.start()
            break
        except Exception:
            if attempt == 2:
                raise
    try:
        # In a thread: the test session's event loop may already be set on this one.
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            pool.submit(asyncio.run, ensure_topics(broker.bootstrap, all_topics())).result(60)
        yield broker.bootstrap
    finally:
        broker.stop()


@dataclass
class Proc:
    """One service process (`python -m <service>.cli <command>`) in its own process group."""

    service: str
    command: str
    env: dict[str, str]
    log_path: Path
    popen: subprocess.Popen[bytes] | None = None
    kills: int = 0

    @property
    def name(self) -> str:
        return f"{self.service}-{self.command}"

    def start(self) -> Proc:
        with self.log_path.open("ab") as log:
            self.popen = subprocess.Popen(
                [sys.executable, "-m", f"{self.service}.cli", self.command],
                cwd=ROOT,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                process_group=0,
            )
        return self

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def kill(self) -> None:
        """SIGKILL, no warning: whatever it was doing stops mid-way."""
        assert self.popen is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        self.popen.wait(10)
        self.kills += 1

    def stop(self, grace: float = 15.0) -> None:
        if self.popen is None or self.popen.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            self.popen.send_signal(signal.SIGTERM)
        try:
            self.popen.wait(grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait(10)

    def tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return "(no output)"
        return "\n".join(text.splitlines()[-lines:])


@dataclass
class Stack:
    """Databases and processes of one scenario, on the system PostgreSQL and its own broker."""

    pg_url: str
    bootstrap: str
    logs: Path
    dbs: dict[str, str] = field(default_factory=dict)
    procs: list[Proc] = field(default_factory=list)
    ports: dict[str, int] = field(default_factory=dict)
    extra_env: dict[str, str] = field(default_factory=dict)

    def env(self, service: str, **extra: str) -> dict[str, str]:
        prefix = service.upper()
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.endswith("_DATABASE_URL") and k not in ("DATABASE_URL", "SMTP_URL")
        }
        env.update(
            {
                f"{prefix}_DATABASE_URL": self.dbs[service],
                "KAFKA_BOOTSTRAP_SERVERS": self.bootstrap,
                "DUEWISE_ADMIN_TOKEN": TOKEN,
                "DUEWISE_ENV": "test",
                f"{prefix}_HOST": "127.0.0.1",
                f"{prefix}_PORT": str(self.port(service)),
                "PYTHONUNBUFFERED": "1",
                "OTEL_SDK_DISABLED": "true",
                **{f"{s.upper()}_API_URL": f"http://127.0.0.1:{p}" for s, p in self.ports.items()},
                **self.extra_env,
                **extra,
            }
        )
        return env

    def port(self, service: str) -> int:
        if service not in self.ports:
            self.ports[service] = free_port()
        return self.ports[service]

    def url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.port(service)}"

    def spawn(self, service: str, command: str, **extra: str) -> Proc:
        proc = Proc(
            service, command, self.env(service, **extra), self.logs / f"{service}-{command}.log"
        )
        self.procs.append(proc.start())
        return proc

    async def query(self, service: str, sql: str, *args: object) -> list[asyncpg.Record]:
        conn = await asyncpg.connect(plain_url(self.dbs[service]))
        try:
            return list(await conn.fetch(sql, *args))
        finally:
            await conn.close()

    async def scalar(self, service: str, sql: str, *args: object) -> object:
        rows = await self.query(service, sql, *args)
        return rows[0][0] if rows else None

    def check_alive(self) -> None:
        for proc in self.procs:
            if (
                proc.popen is not None
                and proc.popen.poll() is not None
                and proc.popen.returncode > 0
            ):
                raise AssertionError(f"{proc.name} exited {proc.popen.returncode}:\n{proc.tail()}")


def _migrate(service: str) -> Callable[[str], None]:
    def run(url: str) -> None:
        env = {**os.environ, f"{service.upper()}_DATABASE_URL": url, "DUEWISE_ENV": "test"}
        subprocess.run(
            [sys.executable, "-m", f"{service}.cli", "migrate"],
            cwd=ROOT,
            env=env,
            check=True,
            capture_output=True,
            timeout=120,
        )

    return run


@contextlib.asynccontextmanager
async def stack(
    pg_url: str, bootstrap: str, logs: Path, services: Sequence[str]
) -> AsyncIterator[Stack]:
    """Scratch databases (migrated) for `services`; every process stopped and each database
    dropped on the way out."""
    async with contextlib.AsyncExitStack() as exits:
        s = Stack(pg_url=pg_url, bootstrap=bootstrap, logs=logs)
        urls = await asyncio.gather(
            *(
                exits.enter_async_context(
                    scratch_database(pg_url, f"faults_{name}", _migrate(name))
                )
                for name in services
            )
        )
        s.dbs = dict(zip(services, urls, strict=True))
        # These scenarios kill service processes, never PostgreSQL: a commit that returns
        # before its WAL reaches the disk is still atomic and visible at once, and only a
        # crash of PostgreSQL or the OS could lose it. On this shared machine a WAL flush
        # takes 20-150 ms, which made the per-event consumers (dunning, notify) crawl.
        conn = await asyncpg.connect(plain_url(pg_url))
        try:
            for url in urls:
                name = url.rsplit("/", 1)[1].split("?")[0]
                await conn.execute(f'ALTER DATABASE "{name}" SET synchronous_commit = off')
        finally:
            await conn.close()
        try:
            yield s
        finally:
            for proc in s.procs:
                await asyncio.to_thread(proc.stop)


async def publish(
    bootstrap: str, events: Iterable[Event | Envelope], *, topic: str | None = None
) -> list[Envelope]:
    """Put events on their topic (keyed by customer, as the relays do); their envelopes."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", linger_ms=5, max_batch_size=256 * 1024
    )
    await producer.start()
    sent: list[Envelope] = []
    try:
        pending = []
        for item in events:
            env = (
                item
                if isinstance(item, Envelope)
                else Envelope.wrap(item, source=SOURCES[item.TOPIC])
            )
            to = topic or (type(item).TOPIC if isinstance(item, Event) else "")
            assert to, "an Envelope needs an explicit topic"
            pending.append(
                await producer.send(
                    to, value=env.body(), key=env.key.encode(), headers=env.headers()
                )
            )
            sent.append(env)
            if len(pending) >= 2000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return sent


async def raw(
    bootstrap: str,
    topic: str,
    items: Iterable[tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]],
) -> None:
    """Put records on `topic` exactly as given: (key, value, headers)."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for key, value, headers in items:
            await producer.send_and_wait(topic, value=value, key=key, headers=headers)
    finally:
        await producer.stop()


async def wait_for(
    what: str,
    cond: Callable[[], Awaitable[bool]],
    *,
    timeout: float,
    stack_: Stack | None = None,
    every: float = 0.5,
) -> float:
    """Poll `cond` until true; the seconds it took. Fails after `timeout` (or if a process died)."""
    t0 = time.monotonic()
    while not await cond():
        if stack_ is not None:
            stack_.check_alive()
        if time.monotonic() - t0 > timeout:
            raise AssertionError(f"{what}: not reached in {timeout:.0f}s")
        await asyncio.sleep(every)
    return time.monotonic() - t0


@dataclass(frozen=True)
class Mail:
    """One message the SMTP catcher accepted, with when its SMTP transaction began and ended."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    message_id: str
    subject: str
    started: float  # time.time() at MAIL FROM: the sender had finished its last look
    received: float  # time.time() at the end of DATA


class _Recorder:
    """aiosmtpd hooks: keep every message with the times of its transaction."""

    def __init__(self) -> None:
        self.mails: list[Mail] = []
        self._started: dict[int, float] = {}

    async def handle_MAIL(
        self, server: object, session: object, envelope: Any, address: str, options: list[str]
    ) -> str:
        self._started[id(envelope)] = time.time()
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_DATA(self, server: object, session: object, envelope: Any) -> str:
        content = envelope.original_content or envelope.content or b""
        raw = content if isinstance(content, bytes) else content.encode()
        parsed = BytesParser(policy=email_policy.default).parsebytes(raw, headersonly=True)
        self.mails.append(
            Mail(
                mail_from=envelope.mail_from or "",
                rcpt_tos=tuple(envelope.rcpt_tos),
                message_id=str(parsed.get("Message-ID", "")).strip("<>"),
                subject=str(parsed.get("Subject", "")),
                started=self._started.pop(id(envelope), time.time()),
                received=time.time(),
            )
        )
        return "250 OK"


@contextlib.contextmanager
def smtp_catcher() -> Iterator[tuple[str, list[Mail]]]:
    """A real SMTP server (aiosmtpd) on a free port: (SMTP_URL, the mails it accepted)."""
    from aiosmtpd.controller import Controller

    recorder = _Recorder()
    port = free_port()
    controller = Controller(recorder, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield f"smtp://127.0.0.1:{port}?starttls=false", recorder.mails
    finally:
        controller.stop()
