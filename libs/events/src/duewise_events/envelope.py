"""CloudEvents 1.0 in Kafka binary mode: attributes in `ce_*` headers, the data as a JSON body.

https://github.com/cloudevents/spec/blob/v1.0.2/cloudevents/bindings/kafka-protocol-binding.md
The W3C `traceparent` (and `tracestate`) ride along as headers of their own.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from duewise_events.catalogue import BY_TYPE, Event

SPECVERSION = "1.0"
CONTENT_TYPE = "application/json"

Headers = list[tuple[str, bytes]]


class EnvelopeError(ValueError):
    """A record that is not a well-formed duewise CloudEvent (a poison record)."""


@dataclass(frozen=True)
class Envelope:
    """One CloudEvent as it travels: the attributes plus the JSON data."""

    id: str
    source: str
    type: str
    time: dt.datetime
    key: str
    data: dict[str, Any]
    subject: str | None = None
    traceparent: str | None = None
    tracestate: str | None = None
    extra_headers: tuple[tuple[str, bytes], ...] = field(default=())

    @classmethod
    def wrap(cls, event: Event, *, source: str, subject: str | None = None) -> Envelope:
        """A new envelope, with a fresh id and the current time, around `event`."""
        return cls(
            id=str(uuid.uuid4()),
            source=source,
            type=event.TYPE,
            time=dt.datetime.now(dt.UTC),
            key=event.key,
            data=event.model_dump(mode="json"),
            subject=subject,
        )

    def body(self) -> bytes:
        return json.dumps(self.data, separators=(",", ":"), sort_keys=True).encode()

    def headers(self) -> Headers:
        hs: Headers = [
            ("ce_specversion", SPECVERSION.encode()),
            ("ce_id", self.id.encode()),
            ("ce_source", self.source.encode()),
            ("ce_type", self.type.encode()),
            ("ce_time", self.time.astimezone(dt.UTC).isoformat().encode()),
            ("content-type", CONTENT_TYPE.encode()),
        ]
        if self.subject:
            hs.append(("ce_subject", self.subject.encode()))
        if self.traceparent:
            hs.append(("traceparent", self.traceparent.encode()))
        if self.tracestate:
            hs.append(("tracestate", self.tracestate.encode()))
        hs.extend(self.extra_headers)
        return hs

    @classmethod
    def from_record(
        cls, *, key: bytes | None, value: bytes | None, headers: Sequence[tuple[str, bytes]]
    ) -> Envelope:
        """Parse a Kafka record; raise EnvelopeError naming what is wrong."""
        hs = {k: v for k, v in headers}
        missing = [h for h in ("ce_specversion", "ce_id", "ce_source", "ce_type") if h not in hs]
        if missing:
            raise EnvelopeError(f"missing CloudEvents header(s): {', '.join(missing)}")
        try:
            attrs = {k: v.decode() for k, v in hs.items() if k.startswith("ce_")}
        except UnicodeDecodeError as exc:
            raise EnvelopeError(f"a ce_* header is not UTF-8: {exc}") from exc
        if attrs["ce_specversion"] != SPECVERSION:
            raise EnvelopeError(f"unsupported ce_specversion {attrs['ce_specversion']!r}")
        if value is None:
            raise EnvelopeError("record has no body")
        try:
            data = json.loads(value)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise EnvelopeError(f"body is not JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise EnvelopeError("body is not a JSON object")
        try:
            time = dt.datetime.fromisoformat(attrs["ce_time"]) if "ce_time" in attrs else None
        except ValueError as exc:
            raise EnvelopeError(f"ce_time is not an RFC 3339 time: {exc}") from exc
        trace = hs.get("traceparent")
        state = hs.get("tracestate")
        return cls(
            id=attrs["ce_id"],
            source=attrs["ce_source"],
            type=attrs["ce_type"],
            time=time or dt.datetime.now(dt.UTC),
            key=key.decode(errors="replace") if key else "",
            data=data,
            subject=attrs.get("ce_subject"),
            traceparent=trace.decode(errors="replace") if trace else None,
            tracestate=state.decode(errors="replace") if state else None,
        )

    def event(self) -> Event:
        """The typed event; EnvelopeError when the type is unknown or the data does not fit."""
        cls = BY_TYPE.get(self.type)
        if cls is None:
            raise EnvelopeError(f"unknown event type {self.type!r}")
        try:
            return cls.model_validate(self.data)
        except ValidationError as exc:
            raise EnvelopeError(f"{self.type} body does not match its schema: {exc}") from exc
