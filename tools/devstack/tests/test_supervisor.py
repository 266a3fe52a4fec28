"""The supervisor with stand-in services (real processes): start, readiness, failure, stop."""

from __future__ import annotations

import asyncio
import io
import os
import signal
import sys
import textwrap
from pathlib import Path

import asyncpg
import httpx
import pytest
from duewise_dev.postgres import database_url
from duewise_dev.pytest_plugin import free_port
from duewise_dev.services import Process, Service
from duewise_dev.supervisor import StackOptions, run_stack
from rich.console import Console

# A stand-in for `python -m <service>.cli <command>`, driven by its environment.
FAKE = textwrap.dedent(
    """
    import http.server, os, sys, time
    command = sys.argv[1]
    print(f"fake {command} starting", flush=True)
    if command == "migrate":
        sys.exit(int(os.environ.get("FAKE_MIGRATE_EXIT", "0")))
    if command == "api":
        class Ready(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                self.send_response(200 if self.path == "/readyz" else 404)
                self.end_headers()
        port = int(os.environ["FAKE_PORT"])
        http.server.HTTPServer(("127.0.0.1", port), Ready).serve_forever()
    time.sleep(float(os.environ.get("FAKE_WORKER_LIFETIME", "3600")))
    print("fake worker giving up", flush=True)
    sys.exit(3)
    """
)


def _fake_service(tmp_path: Path, port: int) -> Service:
    script = tmp_path / "fake.py"
    script.write_text(FAKE)
    cmd = (sys.executable, str(script))
    return Service(
        name="fake",
        port=port,
        migrate=(*cmd, "migrate"),
        processes=(
            Process("fake-api", (*cmd, "api"), port=port),
            Process("fake-worker", (*cmd, "worker"), settle_s=0.3),
        ),
        topics={"fake.events": 2},
    )


def _options(
    tmp_path: Path, pg_url: str, bootstrap: str, env: pytest.MonkeyPatch, **fake: str
) -> StackOptions:
    port = free_port()
    for name, value in {"FAKE_PORT": str(port), **fake}.items():
        env.setenv(name, value)  # the children inherit the supervisor's environment
    return StackOptions(
        data_dir=tmp_path / "data",
        database_url=pg_url,
        kafka_bootstrap=bootstrap,
        services=(_fake_service(tmp_path, port),),
        ready_timeout=10,
    )


def _console() -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(file=out, width=200), out


async def test_starts_everything_and_stops_cleanly_on_sigterm(
    tmp_path: Path, pg_server_url: str, kafka_bootstrap: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    options = _options(
        tmp_path, pg_server_url, kafka_bootstrap, monkeypatch, FAKE_WORKER_LIFETIME="3600"
    )
    service = options.services[0]
    console, out = _console()
    seen: list[str] = []

    def ready(server_url: str, bootstrap: str) -> None:
        seen.append(server_url)
        os.kill(os.getpid(), signal.SIGTERM)  # what systemd or `kill` would send

    assert await run_stack(options, console, on_ready=ready) == 0
    assert seen == [pg_server_url]
    text = out.getvalue()
    assert f"fake      http://127.0.0.1:{service.port}  (docs /docs)" in text
    assert options.admin_token in text  # generated, so shown
    assert "fake-api | fake api starting" in text
    assert "fake api starting" in (options.log_dir / "fake-api.log").read_text()
    # Its database exists, and nothing listens any more.
    conn = await asyncpg.connect(database_url(pg_server_url, "duewise_fake"))
    await conn.close()
    async with httpx.AsyncClient() as http:
        try:
            await http.get(f"{service.base_url}/readyz")
            raise AssertionError("the api still answers after the stack stopped")
        except httpx.ConnectError:
            pass


async def test_a_failed_migration_stops_the_start(
    tmp_path: Path, pg_server_url: str, kafka_bootstrap: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    options = _options(tmp_path, pg_server_url, kafka_bootstrap, monkeypatch, FAKE_MIGRATE_EXIT="2")
    console, out = _console()
    assert await run_stack(options, console) == 1
    text = out.getvalue()
    assert "fake-migrate exited with code 2" in text
    assert "fake migrate starting" in text  # its last lines are shown


async def test_a_child_dying_stops_everything(
    tmp_path: Path, pg_server_url: str, kafka_bootstrap: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    options = _options(
        tmp_path, pg_server_url, kafka_bootstrap, monkeypatch, FAKE_WORKER_LIFETIME="1.5"
    )
    console, out = _console()
    assert await asyncio.wait_for(run_stack(options, console), 20) == 1
    text = out.getvalue()
    assert "fake-worker exited unexpectedly (code 3)" in text
    assert "fake worker giving up" in text


async def test_infra_only_on_the_embedded_servers(tmp_path: Path) -> None:
    options = StackOptions(
        data_dir=tmp_path / "data", pg_port=free_port(), kafka_port=free_port(), services=()
    )
    console, _ = _console()
    urls: list[tuple[str, str]] = []

    def ready(server_url: str, bootstrap: str) -> None:
        urls.append((server_url, bootstrap))
        os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C

    assert await run_stack(options, console, services=False, on_ready=ready) == 0
    [(server_url, bootstrap)] = urls
    assert server_url.endswith(f":{options.pg_port}/postgres")
    assert bootstrap == f"127.0.0.1:{options.kafka_port}"
    assert (tmp_path / "data" / "pg" / "PG_VERSION").exists()  # kept for the next run
