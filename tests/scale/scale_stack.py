"""Two replicas of every worker (relays, consumers, schedulers) as real processes.

One broker (a Tansu of this module's own, so no other test's consumer groups or records mix
in) and one database per service on the test server, each under a fresh name. The invoice
and dunning APIs run once: the load goes in through the first, the clock moves through the
second.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import httpx
import pytest
from duewise_dev.broker import TansuBroker, ensure_topics
from duewise_dev.postgres import database_url, ensure_database
from duewise_dev.pytest_plugin import free_port
from duewise_dev.services import SERVICES, all_topics

TOKEN = "scale-test-token-0123456789abcdef"
REPLICATED = {
    "invoice": ("relay", "consumer"),
    "dunning": ("relay", "consumer", "scheduler"),
    "risk": ("relay", "consumer"),
    "notify": ("relay", "consumer"),
}
_ASSIGNED = re.compile(r"newly assigned partitions (.*?) for group (\w+)")
_PARTITION = re.compile(r"TopicPartition\(topic='([^']+)', partition=(\d+)\)")


@dataclass
class Proc:
    """One running process of the stack, its output in a file."""

    name: str
    popen: subprocess.Popen[bytes]
    log: Path
    ready_url: str  # an API's /readyz, or a worker's on its METRICS_PORT

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def assignment(self) -> set[tuple[str, int]]:
        """The partitions its consumer was given last (aiokafka logs each assignment)."""
        found = _ASSIGNED.findall(self.output())
        if not found:
            return set()
        return {(t, int(p)) for t, p in _PARTITION.findall(found[-1][0])}


@dataclass
class Stack:
    bootstrap: str
    databases: dict[str, str]  # service -> postgresql:// URL of its database
    invoice_url: str
    dunning_url: str
    procs: dict[str, Proc] = field(default_factory=dict)  # "dunning-scheduler-2" -> Proc
    expected_dead: set[str] = field(default_factory=set)  # killed by the test on purpose

    def replicas(self, service: str, worker: str) -> list[Proc]:
        return [self.procs[f"{service}-{worker}-{i}"] for i in (1, 2)]

    def failures(self) -> str:
        dead = [
            p
            for p in self.procs.values()
            if p.popen.poll() is not None and p.name not in self.expected_dead
        ]
        return "\n".join(
            f"--- {p.name} exited {p.popen.returncode}\n{p.output()[-3000:]}" for p in dead
        )


def _env(service: str, stack: Stack, port: int | None, *, api: bool = True) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_URL", "OTEL_"))}
    env.update(
        {
            f"{service.upper()}_DATABASE_URL": stack.databases[service],
            "KAFKA_BOOTSTRAP_SERVERS": stack.bootstrap,
            "DUEWISE_ADMIN_TOKEN": TOKEN,
            "INVOICE_API_URL": stack.invoice_url,
            "LOG_LEVEL": "INFO",
            "PYTHONUNBUFFERED": "1",
            # small scheduler passes, often: both replicas get a share of the due customers
            "DUNNING_BATCH": "3",
            "DUNNING_SCHEDULER_INTERVAL_S": "0.2",
        }
    )
    if port is not None and api:
        env[f"{service.upper()}_PORT"] = str(port)
        env[f"{service.upper()}_HOST"] = "127.0.0.1"
    elif port is not None:  # a worker's /metrics, /livez, /readyz
        env["METRICS_PORT"] = str(port)
        env["METRICS_HOST"] = "127.0.0.1"
    return env


def _start(stack: Stack, logs: Path, name: str, service: str, argv: list[str], port: int) -> None:
    api = argv[-1] == "api"
    log = logs / f"{name}.log"
    with log.open("wb") as out:
        popen = subprocess.Popen(
            argv, env=_env(service, stack, port, api=api), stdout=out, stderr=subprocess.STDOUT
        )
    stack.procs[name] = Proc(name, popen, log, f"http://127.0.0.1:{port}/readyz")


async def _wait(what: str, stack: Stack, check: object, within: float) -> None:
    deadline = time.monotonic() + within
    while True:
        assert not stack.failures(), stack.failures()
        if await check():  # type: ignore[operator]
            return
        assert time.monotonic() < deadline, f"{what}: not within {within}s"
        await asyncio.sleep(0.3)


async def _prepare(server_url: str, bootstrap: str, tag: str) -> dict[str, str]:
    await ensure_topics(bootstrap, all_topics())
    databases = {}
    for service in SERVICES:
        name = f"scale_{service.name}_{tag}"
        await ensure_database(server_url, name)
        databases[service.name] = database_url(server_url, name)
    return databases


async def _drop(server_url: str, databases: dict[str, str]) -> None:
    conn = await asyncpg.connect(server_url)
    try:
        for url in databases.values():
            await conn.execute(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)')
    finally:
        await conn.close()


@pytest.fixture(scope="module")
def scale_stack(pg_server_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    logs = tmp_path_factory.mktemp("scale")
    broker = TansuBroker(free_port(), log_path=logs / "tansu.log")
    broker.start()
    tag = uuid.uuid4().hex[:8]
    databases = asyncio.run(_prepare(pg_server_url, broker.bootstrap, tag))
    invoice_port, dunning_port = free_port(), free_port()
    stack = Stack(
        bootstrap=broker.bootstrap,
        databases=databases,
        invoice_url=f"http://127.0.0.1:{invoice_port}",
        dunning_url=f"http://127.0.0.1:{dunning_port}",
    )
    try:
        migrations = {
            s: subprocess.Popen(
                [sys.executable, "-m", f"{s}.cli", "migrate"],
                env=_env(s, stack, None),
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
            )
            for s in REPLICATED
        }
        for service, popen in migrations.items():
            out, _ = popen.communicate(timeout=300)  # four at once on a busy machine
            assert popen.returncode == 0, f"{service} migrate: {out.decode(errors='replace')}"
        module = {s: [sys.executable, "-m", f"{s}.cli"] for s in REPLICATED}
        _start(stack, logs, "invoice-api", "invoice", [*module["invoice"], "api"], invoice_port)
        _start(stack, logs, "dunning-api", "dunning", [*module["dunning"], "api"], dunning_port)
        for service, workers in REPLICATED.items():
            for worker in workers:
                for i in (1, 2):
                    name = f"{service}-{worker}-{i}"
                    _start(stack, logs, name, service, [*module[service], worker], free_port())
        yield stack
    finally:
        for proc in stack.procs.values():
            if proc.popen.poll() is None:
                proc.popen.send_signal(signal.SIGTERM)
        for proc in stack.procs.values():
            try:
                proc.popen.wait(15)
            except subprocess.TimeoutExpired:
                proc.popen.kill()
                proc.popen.wait()
        broker.stop()
        asyncio.run(_drop(pg_server_url, databases))


async def wait_until_ready(stack: Stack, within: float = 420.0) -> None:
    """Every process answers /readyz (a relay when it leads or stands by, a consumer once in
    its group, a scheduler after a pass), and both members of each group hold partitions."""

    async def ready() -> bool:
        async with httpx.AsyncClient(timeout=1.0) as http:
            for proc in stack.procs.values():
                try:
                    if (await http.get(proc.ready_url)).status_code != 200:
                        return False
                except httpx.HTTPError:
                    return False
        consumers = [p for s in REPLICATED for p in stack.replicas(s, "consumer")]
        return all(p.assignment() for p in consumers) and _disjoint_assignments(stack)

    await _wait("stack ready", stack, ready, within)


def _disjoint_assignments(stack: Stack) -> bool:
    for service in REPLICATED:
        one, two = (p.assignment() for p in stack.replicas(service, "consumer"))
        if one & two:  # a rebalance is still settling: the old assignment is in a log
            return False
    return True


wait = _wait
