"""The event library's instruments: what the relay and the consumers count and measure.

Through the OpenTelemetry API only: the process's MeterProvider (duewise_service.metrics)
decides where they go (Prometheus `/metrics`, OTLP); without one they cost nothing.
Prometheus names get the unit and `_total` suffixes from the exporter.
"""

from __future__ import annotations

from opentelemetry import metrics

meter = metrics.get_meter("duewise_events")

EVENTS_PROCESSED = meter.create_counter(
    "duewise_consumer_events_processed",
    unit="{event}",
    description="Records a consumer finished, by consumer, type and outcome "
    "(applied, duplicate, ignored, dead_lettered)",
)
EVENTS_FAILED = meter.create_counter(
    "duewise_consumer_events_failed",
    unit="{event}",
    description="Failed attempts at a record, by consumer, type and whether the failure "
    "was transient (infrastructure: retried without limit) or not",
)
DLT_RECORDS = meter.create_counter(
    "duewise_consumer_dlt_records",
    unit="{record}",
    description="Records sent to a dead-letter topic, by consumer and original topic",
)
CONSUMER_LAG = meter.create_gauge(
    "duewise_consumer_lag",
    unit="{record}",
    description="Records behind the partition's high watermark (highwater - position), "
    "by consumer, topic and partition, for the partitions this process is assigned",
)
OUTBOX_BACKLOG = meter.create_gauge(
    "duewise_outbox_backlog",
    unit="{row}",
    description="Outbox rows not yet published, by outbox table",
)
OUTBOX_OLDEST_AGE = meter.create_gauge(
    "duewise_outbox_oldest_age",
    unit="s",
    description="Age of the oldest unpublished outbox row (0 when none), by outbox table",
)
OUTBOX_PUBLISHED = meter.create_counter(
    "duewise_outbox_published",
    unit="{event}",
    description="Outbox rows the broker acknowledged, by topic",
)
