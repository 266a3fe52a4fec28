"""Keyset pagination over time-ordered ids (newest first)."""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Sequence
from typing import Generic, TypeVar

from duewise_service.problems import DomainError
from pydantic import BaseModel

T = TypeVar("T")
_ID = re.compile(r"[a-z]{3}_[0-9a-f]{12,64}")
_ID = re.compile(r"[a-z]{3}_[0-9a-f]{12,64}")
MAX_LIMIT = 500


class PageOut(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None


def decode_cursor(cursor: str | None) -> str | None:
    """The id after which the next page starts; 422 naming `cursor` when it is not ours."""
    if not cursor:
        return None
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        after = base64.b64decode(padded, altchars=b"-_", validate=True).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        after = ""
    if not _ID.fullmatch(after):
        raise DomainError(422, "Invalid cursor", "cursor: not a cursor from this API", "cursor")
    return after


def check_limit(limit: int) -> int:
    if not 1 <= limit <= MAX_LIMIT:
        raise DomainError(422, "Invalid limit", f"limit: must be 1..{MAX_LIMIT}", "limit")
    return limit


def next_cursor(ids: Sequence[str], limit: int) -> str | None:
    """Given ids fetched with limit + 1, the cursor of the next page (None on the last)."""
    if len(ids) <= limit:
        return None
    return base64.urlsafe_b64encode(ids[limit - 1].encode()).decode().rstrip("=")
