"""W3C trace context across the outbox and Kafka: captured at write, restored at consume."""

from __future__ import annotations

from collections.abc import Iterable

from opentelemetry import propagate, trace
from opentelemetry.context import Context

tracer = trace.get_tracer("duewise_events")


def current_trace_headers() -> dict[str, str]:
    """`traceparent`/`tracestate` of the active span, empty when there is none."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier


def context_from(traceparent: str | None, tracestate: str | None = None) -> Context:
    """The remote parent context described by stored or received trace headers."""
    carrier = {}
    if traceparent:
        carrier["traceparent"] = traceparent
        if tracestate:
            carrier["tracestate"] = tracestate
    return propagate.extract(carrier)


def links_to(traceparents: Iterable[str | None]) -> list[trace.Link]:
    """One link per distinct valid trace context: a span that serves many traces at once (a
    consumer's run of records) is reachable from each of them."""
    links: dict[str, trace.Link] = {}
    for traceparent in traceparents:
        if traceparent and traceparent not in links:
            ctx = trace.get_current_span(context_from(traceparent)).get_span_context()
            if ctx.is_valid:
                links[traceparent] = trace.Link(ctx)
    return list(links.values())
