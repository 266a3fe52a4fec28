"""One logging setup for every process: JSON lines, trace ids, nothing personal.

structlog loggers (the event library, the sender) and stdlib loggers (the services, uvicorn,
libraries) go through the same processors and come out as one JSON object per line on
stderr, with `trace_id`/`span_id` when emitted inside a span, and with e-mail addresses,
phone numbers and tokens replaced (duewise_service.redact) as a safety net.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

import structlog
from opentelemetry import trace

from duewise_service.redact import redact_event_dict

_HANDLER_NAME = "duewise-json"


def add_trace_ids(_: Any, __: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    """The active span's ids, as the W3C trace context spells them (hex)."""
    ctx = trace.get_current_span().get_span_context()
    if ctx.is_valid:
        event_dict["trace_id"] = format(ctx.trace_id, "032x")
        event_dict["span_id"] = format(ctx.span_id, "016x")
    return event_dict


def _processors(service_name: str) -> list[Any]:
    def add_service(_: Any, __: str, event_dict: dict[str, Any]) -> dict[str, Any]:
        event_dict.setdefault("service", service_name)
        event_dict.pop("color_message", None)  # uvicorn's copy of the message for terminals
        return event_dict

    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.ExtraAdder(),
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        add_service,
        add_trace_ids,
    ]


def configure_logging(service_name: str, *, stream: Any = None, level: str | None = None) -> None:
    """JSON logs for this process. Idempotent: called again, it replaces its own handler.

    `level` defaults to LOG_LEVEL (INFO). Handlers other code attached to the root logger
    (pytest's capture, for one) are left in place.
    """
    shared = _processors(service_name)
    structlog.configure(
        processors=[
            *shared,
            structlog.stdlib.PositionalArgumentsFormatter(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            # last before rendering: the message is formatted, the traceback too
            redact_event_dict,
            structlog.processors.JSONRenderer(),
        ],
    )
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == _HANDLER_NAME]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level or os.environ.get("LOG_LEVEL", "INFO").upper())
    # uvicorn installs its own plain-text handlers before the app is built: route its
    # loggers through ours instead.
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        uvicorn_logger = logging.getLogger(name)
        uvicorn_logger.handlers.clear()
        uvicorn_logger.propagate = True
