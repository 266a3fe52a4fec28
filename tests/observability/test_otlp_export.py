"""With OTEL_EXPORTER_OTLP_ENDPOINT set, a worker process sends its spans and its metrics
over OTLP/HTTP, under its service's name: here a real relay process publishes an outbox row,
and a small OTLP receiver in the test decodes what arrives."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import asyncpg
import pytest
from duewise_dev.broker import ensure_topics
from duewise_dev.postgres import scratch_database
from duewise_service.urls import plain_url
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]
TOPIC = "obs.otlp.test"


class Receiver:
    """An OTLP/HTTP endpoint (protobuf) that keeps what it is sent."""

    def __init__(self) -> None:
        self.spans: list[tuple[str, str]] = []  # (service.name, span name)
        self.metrics: list[tuple[str, str]] = []  # (service.name, metric name)
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                owner.receive(self.path, body)
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def receive(self, path: str, body: bytes) -> None:
        if path == "/v1/traces":
            traces = ExportTraceServiceRequest.FromString(body)
            for rs in traces.resource_spans:
                service = _service(rs.resource.attributes)
                self.spans += [(service, s.name) for ss in rs.scope_spans for s in ss.spans]
        elif path == "/v1/metrics":
            request = ExportMetricsServiceRequest.FromString(body)
            for rm in request.resource_metrics:
                service = _service(rm.resource.attributes)
                self.metrics += [(service, m.name) for sm in rm.scope_metrics for m in sm.metrics]


def _service(attributes: object) -> str:
    for kv in attributes:  # type: ignore[attr-defined]
        if kv.key == "service.name":
            return str(kv.value.string_value)
    return ""


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    try:
        yield r
    finally:
        r.server.shutdown()


@pytest.fixture(scope="module")
async def otlp_invoice_db(pg_server_url: str) -> AsyncIterator[str]:
    from invoice.migrations import upgrade

    async with scratch_database(pg_server_url, "duewise_obs_otlp", upgrade) as url:
        yield url


async def test_a_worker_exports_spans_and_metrics_over_otlp(
    receiver: Receiver, otlp_invoice_db: str, kafka_bootstrap: str
) -> None:
    await ensure_topics(kafka_bootstrap, {TOPIC: 1})
    conn = await asyncpg.connect(plain_url(otlp_invoice_db))
    try:
        await conn.execute(
            "INSERT INTO outbox (event_id, topic, key, type, source, time, payload)"
            " VALUES ($1, $2, 'cus_otlp', 'test.otlp.v1', 'duewise/test', $3, $4)",
            str(uuid.uuid4()),
            TOPIC,
            dt.datetime.now(dt.UTC),
            json.dumps({"hello": "otlp"}),
        )
    finally:
        await conn.close()
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env.update(
        DATABASE_URL=otlp_invoice_db,
        KAFKA_BOOTSTRAP_SERVERS=kafka_bootstrap,
        OTEL_EXPORTER_OTLP_ENDPOINT=receiver.url,
        OTEL_METRIC_EXPORT_INTERVAL="500",
        OTEL_BSP_SCHEDULE_DELAY="200",
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "invoice.cli", "relay"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        wanted_span = ("duewise-invoice", f"{TOPIC} publish")
        wanted_metric = ("duewise-invoice", "duewise_outbox_published")
        while not (wanted_span in receiver.spans and wanted_metric in receiver.metrics):
            assert proc.poll() is None, "the relay exited"
            assert time.monotonic() < deadline, (receiver.spans, sorted(set(receiver.metrics)))
            await asyncio.sleep(0.2)
        assert ("duewise-invoice", "duewise_outbox_backlog") in receiver.metrics
    finally:
        proc.terminate()
        proc.wait(20)
