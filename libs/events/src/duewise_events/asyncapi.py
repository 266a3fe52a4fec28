"""Generates the one catalogue document, `libs/events/asyncapi.yaml`, from the event classes.

`duewise-catalogue` rewrites the file; `duewise-catalogue --check` exits 1 when the committed
file and the code differ (the test suite runs the same comparison).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml

from duewise_events.catalogue import CATALOGUE, TOPICS, Event, dead_letter_topic

DOCUMENT = Path(__file__).resolve().parents[2] / "asyncapi.yaml"

_HEADERS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "CloudEvents 1.0 attributes in Kafka binary mode, plus W3C trace context.",
    "required": ["ce_specversion", "ce_id", "ce_source", "ce_type", "ce_time"],
    "properties": {
        "ce_specversion": {"type": "string", "const": "1.0"},
        "ce_id": {"type": "string", "description": "unique per event; the consumers' inbox key"},
        "ce_source": {"type": "string", "examples": ["duewise/invoice"]},
        "ce_type": {"type": "string", "description": "the event type, versioned in its name"},
        "ce_time": {"type": "string", "format": "date-time"},
        "ce_subject": {"type": "string"},
        "content-type": {"type": "string", "const": "application/json"},
        "traceparent": {"type": "string", "description": "W3C trace context"},
        "tracestate": {"type": "string"},
    },
}

_DLT_HEADERS = {
    "dlt_error": "the exception, as `Type: message`",
    "dlt_error_type": "the exception's class name",
    "dlt_consumer": "the consumer group that gave up",
    "dlt_original_topic": "where the record was read",
    "dlt_original_partition": "its partition",
    "dlt_original_offset": "its offset",
    "dlt_failed_at": "when it was parked (RFC 3339)",
}


def _message_name(cls: type[Event]) -> str:
    return cls.__name__


def build() -> dict[str, Any]:
    """The AsyncAPI 3.0 document for the whole catalogue."""
    schemas: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    for topic, description in TOPICS.items():
        in_topic = [cls for cls in CATALOGUE if topic == cls.TOPIC]
        channel_id = topic.replace(".", "_")
        channels[channel_id] = {
            "address": topic,
            "description": f"{description} Key: the customer id (per-customer order).",
            "messages": {
                _message_name(cls): {"$ref": f"#/components/messages/{_message_name(cls)}"}
                for cls in in_topic
            },
            "bindings": {"kafka": {"partitions": 6, "bindingVersion": "0.5.0"}},
        }
        dlt = dead_letter_topic(topic)
        channels[f"{channel_id}_dlt"] = {
            "address": dlt,
            "description": (
                f"Records of {topic} that a consumer could not process, unchanged, with the "
                "original headers plus: "
                + "; ".join(f"`{k}` {v}" for k, v in _DLT_HEADERS.items())
                + "."
            ),
            "bindings": {"kafka": {"partitions": 6, "bindingVersion": "0.5.0"}},
        }
        operations[f"publish_{channel_id}"] = {
            "action": "send",
            "channel": {"$ref": f"#/channels/{channel_id}"},
            "summary": f"Published to {topic} through its producer's transactional outbox.",
        }
    for cls in CATALOGUE:
        name = _message_name(cls)
        schema = cls.model_json_schema(ref_template="#/components/schemas/{model}")
        for def_name, definition in schema.pop("$defs", {}).items():
            schemas[def_name] = definition
        schemas[name] = schema
        messages[name] = {
            "name": cls.TYPE,
            "title": name,
            "summary": cls.SUMMARY,
            "contentType": "application/json",
            "headers": {"$ref": "#/components/schemas/CloudEventHeaders"},
            "payload": {"$ref": f"#/components/schemas/{name}"},
            "bindings": {
                "kafka": {
                    "key": {"type": "string", "description": "customer_id"},
                    "bindingVersion": "0.5.0",
                }
            },
        }
    schemas["CloudEventHeaders"] = _HEADERS_SCHEMA
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "duewise events",
            "version": "1.0.0",
            "description": (
                "Every event duewise publishes. Generated from libs/events "
                "(duewise_events.catalogue) by `duewise-catalogue`; do not edit by hand."
            ),
        },
        "defaultContentType": "application/json",
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages, "schemas": dict(sorted(schemas.items()))},
    }


def render() -> str:
    return yaml.safe_dump(build(), sort_keys=False, allow_unicode=True, width=100)


def main() -> None:
    text = render()
    if "--check" in sys.argv[1:]:
        if not DOCUMENT.exists() or DOCUMENT.read_text() != text:
            print(f"{DOCUMENT} is out of date: run `duewise-catalogue`", file=sys.stderr)
            raise SystemExit(1)
        return
    DOCUMENT.write_text(text)
    print(f"wrote {DOCUMENT}")


if __name__ == "__main__":
    main()
