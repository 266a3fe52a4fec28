"""The system under test, started for one bench run and stopped at its end.

PostgreSQL (embedded, durable: the same settings as `make run`) and the Tansu broker on free
ports in a temporary directory, unless DATABASE_URL / KAFKA_BOOTSTRAP_SERVERS name real ones;
then the invoice service's migrations, API and relay as subprocesses, exactly as the devstack
runs them (`python -m invoice.cli migrate | api | relay`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import signal
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import httpx
from duewise_dev._util import LOCALHOST, free_port, log_tail
from duewise_dev.broker import TansuBroker, ensure_topics
from duewise_dev.postgres import EmbeddedPostgres, database_url, ensure_database

TOPIC = "invoice.events"
PARTITIONS = 6
EMBEDDED_DATABASE = "duewise_invoice"


class BenchSetupError(RuntimeError):
    """Something the bench needs did not come up; the message shows the log tail."""


@dataclass
class Stack:
    """Where everything listens once `start()` returned."""

    work_dir: Path
    server_url: str = ""
    bootstrap: str = ""
    invoice_db_url: str = ""
    api_url: str = ""
    admin_token: str = field(default_factory=lambda: "bench-" + secrets.token_urlsafe(24))
    postgres_origin: str = ""  # "embedded" or "DATABASE_URL"
    broker_origin: str = ""
    postgres_settings: dict[str, str] = field(default_factory=dict)
    keep_work_dir: bool = False
    profile_dir: Path | None = None  # run the API and relay under cProfile, stats here
    invoice_services: bool = True  # False: only PostgreSQL and the broker (the dunning bench)
    _postgres: EmbeddedPostgres | None = None
    _broker: TansuBroker | None = None
    _procs: dict[str, asyncio.subprocess.Process] = field(default_factory=dict)
    _drop_database: str | None = None

    @property
    def log_dir(self) -> Path:
        return self.work_dir / "logs"

    @property
    def database_note(self) -> str:
        """One line saying which PostgreSQL and how durable it is."""
        s = self.postgres_settings
        knobs = ", ".join(f"{k}={s.get(k, '?')}" for k in _DURABILITY_KNOBS)
        durable = all(s.get(k) == "on" for k in _DURABILITY_KNOBS)
        kind = "durable, same settings as `make run`" if durable else "NOT durable"
        return (
            f"PostgreSQL {s.get('server_version', '?')} ({self.postgres_origin}): {kind}: {knobs}"
        )

    async def start(self, *, log: Log) -> None:
        """Bring everything up; on failure, whatever started is stopped by `stop()`."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        loop = asyncio.get_running_loop()
        external_db = os.environ.get("DATABASE_URL") or None
        if external_db:
            self.server_url, self.postgres_origin = _plain(external_db), "DATABASE_URL"
            # Never clobber a real duewise_invoice: a throwaway database, dropped at the end.
            name = f"duewise_invoice_bench_{secrets.token_hex(4)}"
            self._drop_database = name
        else:
            self._postgres = EmbeddedPostgres(
                self.work_dir / "pg", free_port(), durable=True,
                log_path=self.log_dir / "postgres.log",
            )  # fmt: skip
            log(f"starting embedded PostgreSQL (durable) on port {self._postgres.port}")
            await loop.run_in_executor(None, self._postgres.start)
            self.server_url, self.postgres_origin = self._postgres.url, "embedded, fresh cluster"
            name = EMBEDDED_DATABASE
        external_kafka = os.environ.get("KAFKA_BOOTSTRAP_SERVERS") or None
        if external_kafka:
            self.bootstrap, self.broker_origin = external_kafka, "KAFKA_BOOTSTRAP_SERVERS"
        else:
            self._broker = TansuBroker(free_port(), log_path=self.log_dir / "tansu.log")
            log(f"starting Tansu broker on port {self._broker.port}")
            await loop.run_in_executor(None, self._broker.start)
            self.bootstrap, self.broker_origin = self._broker.bootstrap, "Tansu, in memory"
        await ensure_topics(self.bootstrap, {TOPIC: PARTITIONS})
        await ensure_database(self.server_url, name)
        self.invoice_db_url = database_url(self.server_url, name)
        self.postgres_settings = await _server_settings(self.server_url)
        if not self.invoice_services:
            return

        port = free_port()
        self.api_url = f"http://{LOCALHOST}:{port}"
        env = {
            **os.environ,
            "INVOICE_DATABASE_URL": self.invoice_db_url,
            "KAFKA_BOOTSTRAP_SERVERS": self.bootstrap,
            "DUEWISE_ADMIN_TOKEN": self.admin_token,
            "INVOICE_PORT": str(port),
            "INVOICE_HOST": LOCALHOST,
            "PYTHONUNBUFFERED": "1",
        }
        log("migrating duewise_invoice (python -m invoice.cli migrate)")
        code = await self._run_once("invoice-migrate", "migrate", env, timeout=120.0)
        if code != 0:
            raise BenchSetupError(
                f"invoice migrate exited {code}:\n{self._tail('invoice-migrate')}"
            )
        for name_ in ("api", "relay"):
            await self._spawn(f"invoice-{name_}", name_, env)
        log(f"waiting for {self.api_url}/readyz")
        await self._wait_ready(timeout=60.0)
        await asyncio.sleep(0.5)  # the relay too: it must have connected and taken its lock
        self._check_alive()

    async def stop(self) -> None:
        """Services (SIGTERM, then SIGKILL), then broker, then PostgreSQL; idempotent."""
        # uvicorn re-raises SIGTERM after its graceful shutdown, which kills the process
        # before cProfile writes its stats; SIGINT ends in a KeyboardInterrupt it survives.
        sig = signal.SIGINT if self.profile_dir is not None else signal.SIGTERM
        for name in reversed(list(self._procs)):
            await _stop_process(self._procs.pop(name), sig)
        if self._drop_database is not None:
            with contextlib.suppress(Exception):
                conn = await asyncpg.connect(self.server_url, timeout=5)
                try:
                    await conn.execute(
                        f'DROP DATABASE IF EXISTS "{self._drop_database}" WITH (FORCE)'
                    )
                finally:
                    await conn.close()
            self._drop_database = None
        loop = asyncio.get_running_loop()
        if self._broker is not None:
            await loop.run_in_executor(None, self._broker.stop)
            self._broker = None
        if self._postgres is not None:
            await loop.run_in_executor(None, self._postgres.stop)
            self._postgres = None
        if not self.keep_work_dir:
            shutil.rmtree(self.work_dir, ignore_errors=True)

    def process_pids(self) -> dict[str, int]:
        """Name -> pid of each service process (for CPU accounting)."""
        return {name: proc.pid for name, proc in self._procs.items()}

    def postgres_pid(self) -> int | None:
        proc = self._postgres._proc if self._postgres is not None else None
        return proc.pid if proc is not None else None

    def broker_pid(self) -> int | None:
        proc = self._broker._proc if self._broker is not None else None
        return proc.pid if proc is not None else None

    def _check_alive(self) -> None:
        for name, proc in self._procs.items():
            if proc.returncode is not None:
                raise BenchSetupError(f"{name} exited {proc.returncode}:\n{self._tail(name)}")

    def _tail(self, name: str) -> str:
        return log_tail(self.log_dir / f"{name}.log")

    async def _spawn(self, name: str, command: str, env: dict[str, str]) -> None:
        profile: tuple[str, ...] = ()
        if self.profile_dir is not None and command in ("api", "relay"):
            # cProfile writes its stats when the process exits cleanly (on our SIGTERM).
            profile = ("-m", "cProfile", "-o", str(self.profile_dir / f"{name}.prof"))
        with (self.log_dir / f"{name}.log").open("ab") as out:
            self._procs[name] = await asyncio.create_subprocess_exec(
                sys.executable, *profile, "-m", "invoice.cli", command,
                env=env, stdin=asyncio.subprocess.DEVNULL, stdout=out, stderr=out,
                process_group=0,  # Ctrl-C reaches the bench only; it stops these in order
            )  # fmt: skip

    async def _run_once(self, name: str, command: str, env: dict[str, str], timeout: float) -> int:
        await self._spawn(name, command, env)
        proc = self._procs[name]
        try:
            async with asyncio.timeout(timeout):
                code = await proc.wait()
        finally:
            await _stop_process(self._procs.pop(name))
        return code

    async def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient(timeout=2.0) as http:
            while True:
                self._check_alive()
                with contextlib.suppress(httpx.HTTPError):
                    if (await http.get(f"{self.api_url}/readyz")).status_code == 200:
                        return
                if time.monotonic() > deadline:
                    raise BenchSetupError(
                        f"invoice-api not ready after {timeout:.0f}s:\n{self._tail('invoice-api')}"
                    )
                await asyncio.sleep(0.2)


class Log:
    """Progress lines on stderr, so stdout carries only the results."""

    def __init__(self) -> None:
        self.t0 = time.monotonic()

    def __call__(self, message: str) -> None:
        print(f"[{time.monotonic() - self.t0:6.1f}s] {message}", file=sys.stderr, flush=True)


def make_work_dir() -> Path:
    """A fresh temporary directory for the cluster, the logs and the generated CSVs."""
    return Path(tempfile.mkdtemp(prefix="duewise-bench-"))


_DURABILITY_KNOBS = ("fsync", "synchronous_commit", "full_page_writes")


async def _server_settings(url: str) -> dict[str, str]:
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch(
            "SELECT name, setting FROM pg_settings WHERE name = ANY($1::text[])",
            [*_DURABILITY_KNOBS, "server_version", "shared_buffers", "wal_level"],
        )
    finally:
        await conn.close()
    return {r["name"]: r["setting"] for r in rows}


def _plain(url: str) -> str:
    """postgresql+asyncpg://… -> postgresql://… (asyncpg's own form)."""
    scheme, rest = url.split("://", 1)
    return f"postgresql://{rest}" if scheme.startswith("postgres") else url


async def _stop_process(
    proc: asyncio.subprocess.Process, sig: signal.Signals = signal.SIGTERM, grace: float = 10.0
) -> None:
    if proc.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(sig)
    try:
        await asyncio.wait_for(proc.wait(), grace)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        await proc.wait()
