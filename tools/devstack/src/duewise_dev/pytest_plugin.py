"""Pytest fixtures: a real PostgreSQL server and a real Kafka-protocol broker per session.

Enable with `pytest_plugins = ["duewise_dev.pytest_plugin"]`. Each fixture uses the
environment's server when given (DATABASE_URL, KAFKA_BOOTSTRAP_SERVERS), and otherwise
starts an embedded one on a free port and stops it when the session ends. The fixtures are
sync, so they work whatever event loop (or none) a test uses.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import TypeVar

import pytest

from duewise_dev._util import free_port
from duewise_dev.broker import BrokerError, TansuBroker
from duewise_dev.postgres import EmbeddedPostgres, PostgresError

__all__ = ["free_port", "kafka_bootstrap", "pg_server_url"]

_Server = TypeVar("_Server", EmbeddedPostgres, TansuBroker)


def _start_on_free_port(make: Callable[[int], _Server], attempts: int = 3) -> _Server:
    """Start a server on a fresh free port, retrying if another process grabbed it first."""
    for attempt in range(attempts):
        server = make(free_port())
        try:
            server.start()
            return server
        except (PostgresError, BrokerError):
            if attempt == attempts - 1:
                raise
    raise AssertionError("unreachable")


@pytest.fixture(scope="session")
def pg_server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A postgresql:// URL of a server's maintenance database; tests create their own DBs."""
    if url := os.environ.get("DATABASE_URL"):
        yield url
        return
    base = tmp_path_factory.mktemp("postgres")
    server = _start_on_free_port(
        lambda port: EmbeddedPostgres(
            base / f"pg-{port}", port, durable=False, log_path=base / f"pg-{port}.log"
        )
    )
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A host:port of a Kafka-protocol broker (Tansu, in memory, unless the env names one)."""
    if bootstrap := os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        yield bootstrap
        return
    base = tmp_path_factory.mktemp("tansu")
    broker = _start_on_free_port(
        lambda port: TansuBroker(port, log_path=base / f"tansu-{port}.log")
    )
    try:
        yield broker.bootstrap
    finally:
        broker.stop()
