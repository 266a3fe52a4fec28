"""One OpenTelemetry MeterProvider per process: Prometheus `/metrics`, and OTLP when asked.

Two readers: a Prometheus reader (collected on each scrape of `/metrics`, served by the API
itself or by a worker's METRICS_PORT) and, when OTEL_EXPORTER_OTLP_ENDPOINT is set, a
periodic OTLP exporter. Instruments are created through the OpenTelemetry API wherever the
work happens (duewise_events.metrics, the scheduler, the sender).
"""

from __future__ import annotations

import logging
import os

from fastapi import FastAPI, Response
from opentelemetry import metrics
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricReader, PeriodicExportingMetricReader
from opentelemetry.sdk.metrics.view import DropAggregation, View
from opentelemetry.sdk.resources import Resource
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

log = logging.getLogger("duewise.metrics")

#: Seconds-valued histogram boundaries (the SDK's default ones are for milliseconds).
SECONDS_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


# The HTTP instrumentations record more than the dashboards use, at a cost on every request
# (measured: ~0.1 ms of CPU per request on a trivial route): keep the request duration, by
# method, route template and status only (the Host header and client details are free-form
# and would grow the series without bound); drop in-flight counts and body sizes.
_HTTP_LABELS = {"http.method", "http.target", "http.route", "http.status_code"}
_VIEWS = [
    View(instrument_name="http.server.duration", attribute_keys=_HTTP_LABELS),
    View(instrument_name="http.client.duration", attribute_keys=_HTTP_LABELS | {"net.peer.name"}),
    *(
        View(instrument_name=name, aggregation=DropAggregation())
        for name in (
            "http.server.active_requests",
            "http.server.request.size",
            "http.server.response.size",
            "http.client.request.size",
            "http.client.response.size",
        )
    ),
]


def install_meter_provider(service_name: str) -> None:
    """Idempotent: a provider installed earlier (a test, another app in the process) is kept."""
    if isinstance(metrics.get_meter_provider(), MeterProvider):
        return
    from opentelemetry.exporter.prometheus import PrometheusMetricReader

    readers: list[MetricReader] = [PrometheusMetricReader()]
    if os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter

        readers.append(PeriodicExportingMetricReader(OTLPMetricExporter()))
    metrics.set_meter_provider(
        MeterProvider(
            resource=Resource.create({"service.name": service_name}),
            metric_readers=readers,
            views=_VIEWS,
        )
    )


def prometheus_text() -> bytes:
    """The process's metrics in the Prometheus text format."""
    return generate_latest(REGISTRY)


def mount_metrics(app: FastAPI) -> None:
    """`GET /metrics` on the API's own port: no auth, not traced, not in the OpenAPI."""

    async def scrape() -> Response:
        return Response(prometheus_text(), media_type=CONTENT_TYPE_LATEST)

    app.add_api_route("/metrics", scrape, methods=["GET"], include_in_schema=False)
