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
from opentelemetry.sdk.resources import Resource
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

log = logging.getLogger("duewise.metrics")

#: Seconds-valued histogram boundaries (the SDK's default ones are for milliseconds).
SECONDS_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


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
            resource=Resource.create({"service.name": service_name}), metric_readers=readers
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
