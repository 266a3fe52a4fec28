"""Every process's observability in one call: JSON logs, traces, metrics, outbound HTTP.

- `setup_process(name)`: what an API app and a worker both need.
- `instrument_api(app)`: FastAPI spans and request-duration histograms, and `GET /metrics`.
- `run_worker(name, work)`: a worker (relay, consumer, scheduler, sender) until signalled,
  with `/metrics`, `/livez` and `/readyz` on METRICS_PORT when that is set.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
from opentelemetry.trace import Span
from pydantic_settings import BaseSettings, SettingsConfigDict

from duewise_service.logs import configure_logging
from duewise_service.metrics import install_meter_provider, mount_metrics
from duewise_service.process import run_until_signalled
from duewise_service.tracing import install_tracer_provider
from duewise_service.worker_http import LoopWatch, WorkerHttp

#: Paths that are neither traced nor counted: probes and scrapes.
NOT_TRACED = "healthz,readyz,livez,metrics"


class WorkerSettings(BaseSettings):
    """A worker's own HTTP endpoints (no prefix: the same names for every service)."""

    # An empty variable counts as unset (METRICS_PORT= in a compose file turns the port off).
    model_config = SettingsConfigDict(extra="ignore", env_ignore_empty=True)

    #: Port for `/metrics`, `/livez`, `/readyz`; unset (the default) serves nothing, so that
    #: `make run` can start many workers on one host. Compose and Kubernetes set 9464.
    metrics_port: int | None = None
    #: Interface the endpoints listen on.
    metrics_host: str = "0.0.0.0"
    #: `/livez` fails when the event loop or the work loop has not turned for this long.
    worker_stall_s: float = 120.0


def setup_process(service_name: str) -> None:
    """Logs, tracer and meter providers, and spans for outbound httpx calls. Idempotent."""
    configure_logging(service_name)
    install_tracer_provider(service_name)
    install_meter_provider(service_name)
    instrumentor = HTTPXClientInstrumentor()
    if not instrumentor.is_instrumented_by_opentelemetry:
        instrumentor.instrument()


def instrument_api(app: FastAPI) -> None:
    """Server spans and `http.server.duration` for `app`, and its `GET /metrics`."""
    mount_metrics(app)
    FastAPIInstrumentor.instrument_app(
        app, excluded_urls=NOT_TRACED, server_request_hook=_without_query
    )


def _without_query(span: Span | None, scope: dict[str, Any]) -> None:
    """Query strings stay out of server spans: a sign-in `next`, a reply link's reason, a
    search for an e-mail address. The path stays (tokens in it are redacted on export)."""
    if span is None or not span.is_recording():
        return
    path = scope.get("path", "")
    span.set_attribute("http.target", path)
    host = dict(scope.get("headers") or []).get(b"host", b"").decode("latin-1")
    span.set_attribute("http.url", f"{scope.get('scheme', 'http')}://{host}{path}")


def run_worker(service_name: str, work: Callable[[asyncio.Event], Awaitable[None]]) -> None:
    """Run `work(stop)` until SIGTERM/SIGINT, with the worker's endpoints when configured."""
    setup_process(service_name)
    settings = WorkerSettings()
    watch = LoopWatch(settings.worker_stall_s)
    server = None
    if settings.metrics_port is not None:
        server = WorkerHttp(settings.metrics_host, settings.metrics_port, watch).start()

    async def watched(stop: asyncio.Event) -> None:
        ticker = asyncio.create_task(_tick(watch))
        try:
            await work(stop)
        finally:
            watch.finished = True
            ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ticker

    try:
        run_until_signalled(watched)
    finally:
        if server is not None:
            server.stop()


async def _tick(watch: LoopWatch) -> None:
    while True:
        watch.tick()
        await asyncio.sleep(1.0)
