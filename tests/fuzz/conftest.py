"""The fuzz suite's services: see live_apps."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from live_apps import LiveApps, live_apps


@pytest.fixture(scope="session")
def live(pg_server_url: str, kafka_bootstrap: str) -> Iterator[LiveApps]:
    with live_apps(pg_server_url, kafka_bootstrap) as apps:
        yield apps
