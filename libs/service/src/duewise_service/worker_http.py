"""A worker's own HTTP endpoints on METRICS_PORT: `/metrics`, `/livez`, `/readyz`.

Served from a thread, not the worker's event loop, so that `/livez` can still answer (503)
when the loop is blocked. Liveness is about this process only:
- the event loop turned within the last `stall_s` seconds (a ticker task proves it), and
- the work loop beat within `stall_s` (duewise_events.heartbeat: relay, consumer,
  scheduler and sender beat every time round, also while Kafka or PostgreSQL is down), and
- the work has not ended.
Readiness adds what the work loop reports (connected to its broker/database, leading).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST

from duewise_service.metrics import prometheus_text

log = logging.getLogger("duewise.worker_http")


def _beat_age() -> float:
    # The work loops live in duewise_events, which every service installs beside this
    # library; without it only the event loop's own ticks are watched.
    try:
        from duewise_events import heartbeat
    except ImportError:  # pragma: no cover
        return 0.0
    return heartbeat.seconds_since_beat()


def _loop_readiness() -> tuple[bool, str]:
    try:
        from duewise_events import heartbeat
    except ImportError:  # pragma: no cover
        return True, ""
    return heartbeat.readiness()


class LoopWatch:
    """When the worker's event loop last ran a tick, and whether its work has ended."""

    def __init__(self, stall_s: float) -> None:
        self.stall_s = stall_s
        self.last_tick = time.monotonic()
        self.finished = False

    def tick(self) -> None:
        self.last_tick = time.monotonic()

    def liveness(self) -> tuple[bool, str]:
        if self.finished:
            return False, "the worker's work has ended"
        loop_age = time.monotonic() - self.last_tick
        if loop_age > self.stall_s:
            return False, f"the event loop has not turned for {loop_age:.0f} s"
        beat_age = _beat_age()
        if beat_age > self.stall_s:
            return False, f"the work loop has not gone round for {beat_age:.0f} s"
        return True, "ok"

    def readiness(self) -> tuple[bool, str]:
        live, why = self.liveness()
        if not live:
            return live, why
        ready, why = _loop_readiness()
        return ready, why or ("ok" if ready else "not ready")


def _handler(watch: LoopWatch) -> type[BaseHTTPRequestHandler]:
    checks: dict[str, Callable[[], tuple[bool, str]]] = {
        "/livez": watch.liveness,
        "/readyz": watch.readiness,
    }

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._send(200, prometheus_text(), CONTENT_TYPE_LATEST)
            elif path in checks:
                ok, why = checks[path]()
                if ok:
                    body = {"status": "ok"}
                    self._send(200, json.dumps(body).encode(), "application/json")
                else:
                    problem = {
                        "type": "about:blank",
                        "title": "Service Unavailable",
                        "status": 503,
                        "detail": f"Not {'live' if path == '/livez' else 'ready'}: {why}.",
                    }
                    self._send(503, json.dumps(problem).encode(), "application/problem+json")
            else:
                problem = {"type": "about:blank", "title": "Not Found", "status": 404}
                self._send(404, json.dumps(problem).encode(), "application/problem+json")

        def _send(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            return  # probes every few seconds are not worth a log line

    return Handler


class WorkerHttp:
    """The endpoints' server, on its own daemon thread."""

    def __init__(self, host: str, port: int, watch: LoopWatch) -> None:
        self.server = ThreadingHTTPServer((host, port), _handler(watch))
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(
            target=self.server.serve_forever, name="worker-http", daemon=True
        )

    def start(self) -> WorkerHttp:
        self._thread.start()
        log.info("worker_http.started", extra={"port": self.port})
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
