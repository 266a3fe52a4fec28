"""The worker contract compose and Kubernetes are written against: a worker started with
METRICS_PORT serves `/metrics`, `/livez` and `/readyz`; liveness follows the worker's own
loops (a blocked event loop fails it), never its dependencies (PostgreSQL down: live, not
ready); nothing is served without METRICS_PORT."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from duewise_dev.broker import TansuBroker
from duewise_dev.postgres import scratch_database
from duewise_dev.pytest_plugin import free_port
from duewise_events import heartbeat
from duewise_service.worker_http import LoopWatch, WorkerHttp


@pytest.fixture(scope="module")
async def invoice_db(pg_server_url: str) -> AsyncIterator[str]:
    from invoice.migrations import upgrade

    async with scratch_database(pg_server_url, "duewise_obs_worker", upgrade) as url:
        yield url


@pytest.fixture(scope="module")
def private_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A broker of its own: the real consumers commit offsets under their real group names
    (dunning, risk), which must not touch the session broker's groups."""
    port = free_port()
    broker = TansuBroker(port, log_path=tmp_path_factory.mktemp("obs-tansu") / "tansu.log")
    broker.start()
    try:
        yield broker.bootstrap
    finally:
        broker.stop()


def _start(args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    return subprocess.Popen(
        [sys.executable, "-m", *args],
        env={**base, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def _stop(proc: subprocess.Popen[bytes]) -> str:
    proc.terminate()
    try:
        out, _ = proc.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
    return out.decode(errors="replace")


def _wait_for_line(proc: subprocess.Popen[bytes], text: str, within: float = 60) -> None:
    """Read the process's output until a line contains `text` (bounded by `within`)."""
    found = threading.Event()

    def read() -> None:
        assert proc.stdout is not None
        for raw in proc.stdout:
            if text in raw.decode(errors="replace"):
                found.set()
                return

    threading.Thread(target=read, daemon=True).start()
    assert found.wait(within), f"no line with {text!r} within {within}s"


def _wait_for(url: str, status: int, proc: subprocess.Popen[bytes], within: float = 60) -> str:
    deadline = time.monotonic() + within
    last: object = None
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the worker exited"
        try:
            r = httpx.get(url, timeout=2)
            last = (r.status_code, r.text[:300])
            if r.status_code == status:
                return r.text
        except httpx.HTTPError as exc:
            last = exc
        time.sleep(0.2)
    raise AssertionError(f"{url} never answered {status} within {within}s; last: {last!r}")


@pytest.mark.slow
def test_a_relay_process_serves_metrics_livez_and_readyz(
    invoice_db: str, kafka_bootstrap: str
) -> None:
    port = free_port()
    proc = _start(
        ["invoice.cli", "relay"],
        {
            "DATABASE_URL": invoice_db,
            "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
            "METRICS_PORT": str(port),
        },
    )
    try:
        base = f"http://127.0.0.1:{port}"
        assert _wait_for(f"{base}/readyz", 200, proc) == '{"status": "ok"}'
        assert httpx.get(f"{base}/livez", timeout=2).status_code == 200
        # the relay measures its backlog on its first pass: the series is there, at zero
        deadline = time.monotonic() + 30
        while "duewise_outbox_backlog{" not in (text := httpx.get(f"{base}/metrics").text):
            assert time.monotonic() < deadline, text[-2000:]
            time.sleep(0.2)
        assert 'duewise_outbox_backlog{otel_scope_name="duewise_events"' in text
        assert 'table="outbox"} 0.0' in text
        assert "duewise_outbox_oldest_age_seconds{" in text
        assert httpx.get(f"{base}/nope").status_code == 404
    finally:
        out = _stop(proc)
    # JSON log lines from the worker, through the one formatter
    assert '"event": "relay.started"' in out, out[-2000:]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("service", "process"),
    [("dunning", "scheduler"), ("notify", "sender"), ("risk", "consumer"), ("dunning", "consumer")],
)
def test_every_kind_of_worker_serves_the_endpoints(
    service: str, process: str, obs_dbs: dict[str, str], private_broker: str
) -> None:
    port = free_port()
    proc = _start(
        [f"{service}.cli", process],
        {
            "DATABASE_URL": obs_dbs[service],
            "KAFKA_BOOTSTRAP_SERVERS": private_broker,
            "METRICS_PORT": str(port),
            "DUNNING_SCHEDULER_INTERVAL_S": "0.2",
        },
    )
    try:
        base = f"http://127.0.0.1:{port}"
        _wait_for(f"{base}/readyz", 200, proc, within=90)
        assert httpx.get(f"{base}/livez", timeout=2).status_code == 200
        text = httpx.get(f"{base}/metrics", timeout=2).text
        assert "process_cpu_seconds_total" in text
        if process == "scheduler":  # a pass is measured as soon as one has run
            assert "duewise_scheduler_pass_duration_seconds_count" in text
    finally:
        _stop(proc)


@pytest.mark.slow
def test_a_worker_whose_database_is_down_is_live_but_not_ready(kafka_bootstrap: str) -> None:
    port = free_port()
    nowhere = f"postgresql://postgres@127.0.0.1:{free_port()}/none"
    proc = _start(
        ["invoice.cli", "relay"],
        {
            "DATABASE_URL": nowhere,
            "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
            "METRICS_PORT": str(port),
        },
    )
    try:
        base = f"http://127.0.0.1:{port}"
        body = _wait_for(f"{base}/readyz", 503, proc)
        assert "the database is unavailable" in body
        # well past the first retries: still live, because its loop keeps turning
        time.sleep(0.5)
        assert httpx.get(f"{base}/livez", timeout=2).status_code == 200
    finally:
        _stop(proc)


@pytest.mark.slow
def test_no_metrics_port_no_endpoints(invoice_db: str, kafka_bootstrap: str) -> None:
    port = free_port()
    proc = _start(
        ["invoice.cli", "relay"],
        {
            "DATABASE_URL": invoice_db,
            "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
            "METRICS_PORT": "",
        },
    )
    try:
        # running for real (its first pass logged), yet nothing listens on any port of ours
        _wait_for_line(proc, '"event": "relay.started"')
        assert proc.poll() is None
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"http://127.0.0.1:{port}/livez", timeout=2)
    finally:
        _stop(proc)


async def test_livez_fails_while_the_event_loop_is_blocked_and_recovers() -> None:
    watch = LoopWatch(stall_s=1.0)
    server = WorkerHttp("127.0.0.1", 0, watch).start()
    base = f"http://127.0.0.1:{server.port}"
    heartbeat.set_ready(True)

    async def tick() -> None:
        while True:
            watch.tick()
            heartbeat.beat()
            await asyncio.sleep(0.1)

    ticker = asyncio.create_task(tick())
    try:
        await asyncio.sleep(0.3)
        assert (await asyncio.to_thread(httpx.get, f"{base}/livez")).status_code == 200
        seen: list[httpx.Response] = []
        # a probe from another thread while this loop is blocked (as a stuck worker's is)
        prober = threading.Timer(2.0, lambda: seen.append(httpx.get(f"{base}/livez")))
        prober.start()
        time.sleep(2.5)  # noqa: ASYNC251 (blocking the loop on purpose: the fault under test)
        prober.join()
        assert seen[0].status_code == 503
        assert seen[0].headers["content-type"] == "application/problem+json"
        assert "has not turned" in seen[0].json()["detail"]
        await asyncio.sleep(0.3)  # unblocked: the ticker runs again
        assert (await asyncio.to_thread(httpx.get, f"{base}/livez")).status_code == 200
        # a work loop that stops beating (stuck on an await) fails it too
        ticker.cancel()

        async def loop_only() -> None:
            while True:
                watch.tick()
                await asyncio.sleep(0.1)

        ticker = asyncio.create_task(loop_only())
        await asyncio.sleep(1.3)
        r = await asyncio.to_thread(httpx.get, f"{base}/livez")
        assert r.status_code == 503
        assert "work loop" in r.json()["detail"]
        assert (await asyncio.to_thread(httpx.get, f"{base}/readyz")).status_code == 503
    finally:
        ticker.cancel()
        server.stop()
