"""Personal data and secrets out of logs and span attributes: the patterns, in one place.

Redacting at the source (log an id, not an address) is the rule; this is the safety net a
log processor and a span processor apply to whatever still slips through.
"""

from __future__ import annotations

import re
from collections.abc import MutableMapping
from typing import Any

# also URL-encoded (%40), as an address in a query string or a form body arrives
EMAIL = re.compile(r"[A-Za-z0-9._%+-]+(?:@|%40)[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
# E.164 and the usual national spellings: a run of 8+ digits with spaces, dots, dashes or
# parentheses, optionally with a leading +. Ids and amounts here are not written that way.
PHONE = re.compile(r"(?<![\w/.-])\+?\d[\d ().-]{6,}\d(?![\w/-])")
# Bearer credentials and the project's own secret formats (dw_ API tokens, whsec_ webhook
# secrets), then any long URL-safe run (session ids, CSRF and sign-in tokens are 43 chars).
TOKEN = re.compile(
    r"(?i:bearer\s+)\S+|\b(?:dw|whsec)_[A-Za-z0-9_+/=-]{8,}|(?<![A-Za-z0-9_-])[A-Za-z0-9_-]{40,}"
)

_KEEP = frozenset({"trace_id", "span_id", "timestamp", "level", "logger", "service"})


def redact_text(value: str) -> str:
    """`value` with e-mail addresses, phone numbers and tokens replaced by markers."""
    if not value:
        return value
    value = TOKEN.sub("[token]", value)
    value = EMAIL.sub("[email]", value)
    return PHONE.sub(_phone, value)


def _phone(match: re.Match[str]) -> str:
    digits = sum(ch.isdigit() for ch in match.group(0))
    # dates (2026-12-02) and times have fewer than 9 digits once separated; real numbers
    # have at least 9.
    if digits < 9 or _looks_like_date(match.group(0)):
        return match.group(0)
    return "[phone]"


def _looks_like_date(text: str) -> bool:
    return bool(re.fullmatch(r"\d{4}-\d{2}-\d{2}([ T].*)?", text.strip()))


def redact_value(value: Any) -> Any:
    """Strings redacted; containers walked; everything else as is."""
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, dict):
        return {k: redact_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(redact_value(v) for v in value)
    return value


def redact_event_dict(
    _: Any, __: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: redact every value but the bookkeeping fields."""
    return {k: (v if k in _KEEP else redact_value(v)) for k, v in event_dict.items()}
