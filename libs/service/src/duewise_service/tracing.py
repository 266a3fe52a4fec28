"""One OpenTelemetry setup for every process of every service."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ParentBased, Sampler

from duewise_service.redact import redact_value

log = logging.getLogger("duewise.tracing")


class RedactingSpanProcessor(SpanProcessor):
    """Safety net: e-mail addresses, phone numbers and tokens out of finished spans'
    attributes and events (an exception message, a URL with a query) before any exporter
    sees them. Added first, so it runs before the exporting processors."""

    def on_end(self, span: ReadableSpan) -> None:
        attributes = span._attributes
        if attributes:
            span._attributes = {k: redact_value(v) for k, v in attributes.items()}
        if span._events:
            span._events = [
                Event(e.name, redact_value(dict(e.attributes or {})), e.timestamp)
                for e in span._events
            ]


def make_tracer_provider(
    service_name: str,
    exporters: Sequence[SpanExporter] = (),
    *,
    sampler: Sampler | None = None,
) -> TracerProvider:
    """A provider that redacts, then hands finished spans to `exporters` in batches."""
    provider = TracerProvider(
        resource=Resource.create({"service.name": service_name}), sampler=sampler
    )
    provider.add_span_processor(RedactingSpanProcessor())
    for exporter in exporters:
        provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider


def install_tracer_provider(service_name: str) -> None:
    """An SDK provider, so spans (and the traceparent stored in outbox rows) exist.

    Exporting is the environment's choice: spans leave the process only when
    OTEL_EXPORTER_OTLP_ENDPOINT is set. Idempotent: a provider installed earlier (by a
    test, or another app in the process) is kept.
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
    exporters: list[SpanExporter] = []
    if exporting:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        exporters.append(OTLPSpanExporter())
    trace.set_tracer_provider(make_tracer_provider(service_name, exporters, sampler=sampler))
