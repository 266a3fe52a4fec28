"""What the email channel sends and what it reports back."""

from __future__ import annotations

import email.utils
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

__all__ = ["Attachment", "Confirm", "OutgoingEmail", "SendError", "SendResult", "Withdrawn"]


#: Asked at the last moment before a message is committed to the channel (for SMTP: the
#: envelope accepted, the data not yet sent). None: go on; a sentence: withdraw the message.
Confirm = Callable[[], Awaitable[str | None]]


@dataclass(frozen=True)
class Attachment:
    filename: str
    content_type: str  # e.g. "application/pdf"
    data: bytes


@dataclass(frozen=True)
class OutgoingEmail:
    message_id: str  # the full "<...@domain>" Message-ID, stable for this message
    from_addr: str  # the From header, e.g. "Acme AR <ar@acme.example>"
    to: list[str]
    cc: list[str]
    subject: str
    text: str
    html: str | None
    attachments: list[Attachment]
    headers: dict[str, str]  # List-Unsubscribe, List-Unsubscribe-Post, X-Duewise-Message, ...
    reply_to: str | None = None

    @property
    def recipients(self) -> list[str]:
        """The envelope recipients: To then Cc, bare addresses, each once (case-insensitive)."""
        seen: set[str] = set()
        out: list[str] = []
        for _name, addr in email.utils.getaddresses([*self.to, *self.cc]):
            if addr and addr.lower() not in seen:
                seen.add(addr.lower())
                out.append(addr)
        return out


@dataclass(frozen=True)
class SendResult:
    accepted: list[str]
    refused: dict[str, tuple[int, str]]  # recipient -> (code, message) refused at RCPT
    response: str  # the server's reply to the message data, e.g. "250 OK queued as X"


class SendError(Exception):
    """A send that did not happen, and whether trying again could help.

    permanent: a 5xx at MAIL FROM or after the data, or every recipient refused with a 5xx.
    Everything else (4xx, connection and TLS failures, timeouts, authentication) is transient.
    uncertain: the connection was lost after the message data went out, before the server
    answered; the server may have accepted it.
    """

    def __init__(
        self,
        detail: str,
        *,
        permanent: bool,
        code: int | None = None,
        refused: dict[str, tuple[int, str]] | None = None,
        uncertain: bool = False,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.permanent = permanent
        self.code = code
        self.refused = refused or {}
        self.uncertain = uncertain


class Withdrawn(Exception):
    """The confirmation said no at the last moment: nothing was sent (the SMTP envelope was
    reset before the data)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
