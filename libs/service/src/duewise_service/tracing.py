"""One OpenTelemetry setup for every process of every service."""

from __future__ import annotations

import logging
import os

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ParentBased

log = logging.getLogger("duewise.tracing")


def install_tracer_provider(service_name: str) -> None:
    """An SDK provider, so spans (and the traceparent stored in outbox rows) exist.

    Exporting is the environment's choice: spans leave the process only when
    OTEL_EXPORTER_OTLP_ENDPOINT is set and an OTLP exporter package is installed. Idempotent:
    a provider installed earlier (by a test, or another app in the process) is kept.
    """
    if isinstance(trace.get_tracer_provider(), TracerProvider):
        return
    exporting = bool(os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"))
    sampler = None
    if not exporting and not os.environ.get("OTEL_TRACES_SAMPLER"):
        # Nothing leaves the process, so recording spans is pure cost (measured: a third of
        # the invoice API's throughput). Trace ids are still minted and propagated through
        # the outbox and Kafka; a caller that sends a sampled traceparent is still recorded.
        sampler = ParentBased(root=ALWAYS_OFF)
    provider = TracerProvider(
        resource=Resource.create({"service.name": service_name}), sampler=sampler
    )
    if exporting:
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import (  # type: ignore[import-not-found]
                OTLPSpanExporter,
            )
            from opentelemetry.sdk.trace.export import BatchSpanProcessor

            provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        except ImportError:
            log.warning("OTEL_EXPORTER_OTLP_ENDPOINT is set but no OTLP exporter is installed")
    trace.set_tracer_provider(provider)
