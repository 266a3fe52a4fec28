"""One running stack for every end-to-end test: `duewise-dev run`, as `make run` starts it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest
from duewise_dev.pytest_plugin import free_port
from e2e_stack import ROOT, TOKEN

READY_URLS = tuple(f"http://127.0.0.1:{port}/readyz" for port in (8001, 8002, 8003, 8004))


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    data_dir = tmp_path_factory.mktemp("quickstart")
    kafka_port = free_port()
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DATABASE_URL", "KAFKA_BOOTSTRAP_SERVERS")  # the embedded default
    }
    catcher_port = free_port()
    env.pop("SMTP_URL", None)  # the local catcher, as on a fresh machine
    env.update(
        DUEWISE_ADMIN_TOKEN=TOKEN,
        DUEWISE_PG_PORT=str(free_port()),
        DUEWISE_KAFKA_PORT=str(kafka_port),
        DUEWISE_SMTP_PORT=str(free_port()),
        DUEWISE_CATCHER_PORT=str(catcher_port),
    )
    log = (data_dir / "stack.out").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "duewise_dev.cli", "run", "--data-dir", str(data_dir), "--quiet"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 150
        while True:
            assert proc.poll() is None, (data_dir / "stack.out").read_text()
            try:
                if all(httpx.get(u, timeout=1).status_code == 200 for u in READY_URLS):
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, (data_dir / "stack.out").read_text()
            time.sleep(0.3)
        yield {
            "bootstrap": f"127.0.0.1:{kafka_port}",
            "out": str(data_dir / "stack.out"),
            "catcher": f"http://127.0.0.1:{catcher_port}",
        }
    finally:
        proc.send_signal(signal.SIGINT)  # Ctrl-C
        try:
            code = proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
        log.close()
        assert code == 0, (data_dir / "stack.out").read_text()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The first end-to-end test also starts the whole stack: give these tests more time."""
    here = os.path.dirname(__file__)
    for item in items:
        if str(item.path).startswith(here):
            item.add_marker(pytest.mark.timeout(300))
