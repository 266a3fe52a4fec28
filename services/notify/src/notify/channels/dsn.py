"""Delivery status notifications (RFC 3464): which recipient bounced, why, for which message."""

from __future__ import annotations

import email
import email.message
import email.policy
from dataclasses import dataclass
from email.message import Message
from email.parser import BytesHeaderParser, HeaderParser

__all__ = ["Bounce", "parse_dsn"]


@dataclass(frozen=True)
class Bounce:
    recipient: str  # the Final-Recipient address (type prefix such as "rfc822;" removed)
    action: str  # failed, delayed, delivered, relayed, expanded (lower case)
    status: str  # the enhanced status code, e.g. "5.1.1"
    diagnostic: str | None  # the Diagnostic-Code, e.g. "smtp; 550 5.1.1 no such user"
    original_message_id: str | None  # the bounced message's Message-ID, "<...@...>"

    @property
    def permanent(self) -> bool:
        """The address is undeliverable (not merely delayed)."""
        return self.action == "failed" or self.status.startswith("5")


def _address(value: str) -> str:
    """ "rfc822; a@b.example" -> "a@b.example"."""
    _kind, sep, addr = value.partition(";")
    return (addr if sep else value).strip().strip("<>")


def _one_line(value: object) -> str:
    return " ".join(str(value).split())


def _original_message_id(report: email.message.Message) -> str | None:
    for part in report.walk():
        ctype = part.get_content_type()
        headers: email.message.Message | None = None
        if ctype == "message/rfc822":
            payload = part.get_payload()
            if isinstance(payload, list) and payload and isinstance(payload[0], Message):
                headers = payload[0]
        elif ctype == "text/rfc822-headers":
            raw = part.get_payload(decode=True)
            if isinstance(raw, bytes):
                headers = BytesHeaderParser(policy=email.policy.compat32).parsebytes(raw)
            else:
                headers = HeaderParser(policy=email.policy.compat32).parsestr(str(raw))
        if headers is not None and headers.get("Message-ID"):
            return _one_line(headers["Message-ID"])
    return None


def parse_dsn(raw: bytes) -> list[Bounce]:
    """Every per-recipient block of a multipart/report delivery-status message.

    Returns an empty list for anything that is not a DSN (an auto-reply, a human's answer).
    """
    report = email.message_from_bytes(raw, policy=email.policy.compat32)
    if report.get_content_type() != "multipart/report":
        return []
    original_id = _original_message_id(report)
    bounces: list[Bounce] = []
    for part in report.walk():
        if part.get_content_type() != "message/delivery-status":
            continue
        blocks = part.get_payload()
        if not isinstance(blocks, list):
            continue
        # The first block holds the per-message fields (Reporting-MTA, Arrival-Date).
        for block in blocks[1:]:
            if not isinstance(block, Message):
                continue
            final = block.get("Final-Recipient") or block.get("Original-Recipient")
            if not final:
                continue
            diagnostic = block.get("Diagnostic-Code")
            bounces.append(
                Bounce(
                    recipient=_address(_one_line(final)),
                    action=_one_line(block.get("Action", "")).lower(),
                    status=_one_line(block.get("Status", "")).split(" ")[0],
                    diagnostic=_one_line(diagnostic) if diagnostic else None,
                    original_message_id=original_id,
                )
            )
    return bounces
