"""HTTP load generator for POST /v1/invoices, run as its own process (`python -m bench.load`).

Reads one JSON job on stdin, writes one JSON result on stdout. Two modes:

- `open`: sends are scheduled at a fixed rate whatever the responses do (open loop), at most
  `max_in_flight` outstanding; a send waiting for a slot is late, and its latency is counted
  from its *scheduled* time, so a slow server cannot hide its queueing (no coordinated
  omission). Requests scheduled during the warm-up are sent but not counted.
- `closed`: `concurrency` workers each send the next request when the last one answered.

It is a separate process so that its CPU is its own, but on a 2-core machine it still competes
with the API, the relay, PostgreSQL and the broker for the same two cores.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import math
import random
import sys
import time
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any

import httpx


@dataclass
class Job:
    mode: str  # "open" | "closed"
    base_url: str
    token: str
    customer_ids: list[str]
    prefix: str  # makes invoice numbers unique across jobs
    rate: float = 300.0
    duration_s: float = 20.0
    warmup_s: float = 3.0
    max_in_flight: int = 64
    concurrency: int = 16
    idempotency_key: bool = True
    timeout_s: float = 10.0
    drain_s: float = 30.0  # open loop: how long the backlog may take once the schedule ends


@dataclass
class Result:
    mode: str
    sent: int = 0  # counted requests (after warm-up)
    ok: int = 0
    errors: int = 0
    error_samples: list[str] = field(default_factory=list)
    window_s: float = 0.0
    throughput: float = 0.0  # ok responses per second in the measured window
    latency_ms: dict[str, float] = field(default_factory=dict)  # from scheduled time
    service_ms: dict[str, float] = field(default_factory=dict)  # from the actual send
    late_sends: int = 0  # sent >5 ms after their scheduled time (open loop)
    abandoned: int = 0  # still queued or in flight `drain_s` after the schedule ended
    max_in_flight_seen: int = 0
    loadgen_cpu_s: float = 0.0


def percentiles(samples: list[float]) -> dict[str, float]:
    """p50/p95/p99/max/mean in ms of samples in seconds (nearest-rank)."""
    if not samples:
        return {}
    s = sorted(samples)

    def rank(p: float) -> float:
        return s[min(len(s) - 1, max(0, math.ceil(p / 100 * len(s)) - 1))] * 1000

    return {
        "p50": rank(50), "p95": rank(95), "p99": rank(99),
        "max": s[-1] * 1000, "mean": sum(s) / len(s) * 1000,
    }  # fmt: skip


class _Bodies:
    def __init__(self, job: Job) -> None:
        self.job = job
        self.rng = random.Random(hash(job.prefix))
        self.n = 0
        self.issue = dt.date.today()

    def next(self) -> dict[str, Any]:
        self.n += 1
        rng = self.rng
        lines = [
            {"description": f"Item {k}", "quantity": rng.randint(1, 9),
             "unit_price": rng.randint(100, 250_000)}
            for k in range(rng.randint(1, 3))
        ]  # fmt: skip
        return {
            "customer_id": rng.choice(self.job.customer_ids),
            "number": f"{self.job.prefix}-{self.n}",
            "issue_date": self.issue.isoformat(),
            "due_date": (self.issue + dt.timedelta(days=30)).isoformat(),
            "currency": "EUR",
            "lines": lines,
        }


class _Runner:
    def __init__(self, job: Job) -> None:
        self.job = job
        self.bodies = _Bodies(job)
        self.result = Result(mode=job.mode)
        self.latencies: list[float] = []
        self.service: list[float] = []
        self.in_flight = 0
        self.first_counted = float("inf")
        self.last_done = 0.0

    def client(self, connections: int) -> httpx.AsyncClient:
        limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
        return httpx.AsyncClient(
            base_url=self.job.base_url,
            headers={"Authorization": f"Bearer {self.job.token}"},
            limits=limits,
            timeout=self.job.timeout_s,
        )

    async def one(self, http: httpx.AsyncClient, scheduled: float, counted: bool) -> None:
        body = self.bodies.next()
        headers = {"Idempotency-Key": uuid.uuid4().hex} if self.job.idempotency_key else {}
        self.in_flight += 1
        self.result.max_in_flight_seen = max(self.result.max_in_flight_seen, self.in_flight)
        sent = time.perf_counter()
        error: str | None = None
        try:
            response = await http.post("/v1/invoices", json=body, headers=headers)
            if response.status_code != 201:
                error = f"{response.status_code} {response.text[:200]}"
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"
        finally:
            self.in_flight -= 1
        done = time.perf_counter()
        if not counted:
            return
        r = self.result
        r.sent += 1
        self.first_counted = min(self.first_counted, scheduled)
        self.last_done = max(self.last_done, done)
        if sent - scheduled > 0.005:
            r.late_sends += 1
        if error is None:
            r.ok += 1
            self.latencies.append(done - scheduled)
            self.service.append(done - sent)
        else:
            r.errors += 1
            if len(r.error_samples) < 5:
                r.error_samples.append(error)

    async def open_loop(self) -> None:
        job = self.job
        slots = asyncio.Semaphore(job.max_in_flight)
        interval = 1.0 / job.rate
        total = int((job.warmup_s + job.duration_s) * job.rate)
        warm = int(job.warmup_s * job.rate)
        tasks: set[asyncio.Task[None]] = set()

        async def scheduled_send(http: httpx.AsyncClient, at: float, counted: bool) -> None:
            async with slots:
                await self.one(http, at, counted)

        async with self.client(job.max_in_flight) as http:
            start = time.perf_counter() + 0.05
            for i in range(total):
                at = start + i * interval
                delay = at - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                task = asyncio.create_task(scheduled_send(http, at, i >= warm))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            if tasks:
                _, pending = await asyncio.wait(tasks, timeout=job.drain_s)
                for task in pending:
                    task.cancel()
                await asyncio.gather(*pending, return_exceptions=True)
                # Bounded run: what the server could not take in time counts as an error.
                self.result.abandoned = len(pending)
                self.result.errors += len(pending)
                self.result.sent += len(pending)

    async def closed_loop(self) -> None:
        job = self.job
        async with self.client(job.concurrency) as http:
            t0 = time.perf_counter()
            counted_from = t0 + job.warmup_s
            stop_at = counted_from + job.duration_s

            async def worker() -> None:
                while (now := time.perf_counter()) < stop_at:
                    await self.one(http, now, now >= counted_from)

            await asyncio.gather(*(worker() for _ in range(job.concurrency)))

    async def run(self) -> Result:
        cpu0 = time.process_time()
        if self.job.mode == "open":
            await self.open_loop()
        else:
            await self.closed_loop()
        r = self.result
        r.window_s = max(self.last_done - self.first_counted, 1e-9)
        r.throughput = r.ok / r.window_s
        r.latency_ms = percentiles(self.latencies)
        r.service_ms = percentiles(self.service)
        r.loadgen_cpu_s = time.process_time() - cpu0
        return r


def main() -> None:
    job = Job(**json.load(sys.stdin))
    try:
        import uvloop  # a cheaper event loop leaves more of the 2 cores to the server

        runner: Any = uvloop.run
    except ImportError:
        runner = asyncio.run
    result = runner(_Runner(job).run())
    json.dump(asdict(result), sys.stdout)


if __name__ == "__main__":
    main()
