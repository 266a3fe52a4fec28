"""Email: build a message, send it over SMTP, read the bounces that come back.

The public interface of the email channel, in one import:

- `OutgoingEmail`, `Attachment` — what to send (`message.py`);
- `SmtpSender` — `from_url(SMTP_URL, from_addr=...)`, `send()`, `aclose()`; the URL's TLS
  and authentication rules are in `smtp.py`;
- `SendResult`, `SendError` — what the server said, and whether trying again can help;
- `Confirm`, `Withdrawn` — the caller's last word, asked inside the SMTP transaction;
- `build_message` — the bytes that go out (`mime.py`);
- `parse_dsn`, `Bounce` — RFC 3464 delivery status notifications (`dsn.py`).
"""

from __future__ import annotations

from notify.channels.dsn import Bounce, parse_dsn
from notify.channels.message import (
    Attachment,
    Confirm,
    OutgoingEmail,
    SendError,
    SendResult,
    Withdrawn,
)
from notify.channels.mime import build_message
from notify.channels.smtp import SmtpSender

__all__ = [
    "Attachment",
    "Bounce",
    "Confirm",
    "OutgoingEmail",
    "SendError",
    "SendResult",
    "SmtpSender",
    "Withdrawn",
    "build_message",
    "parse_dsn",
]
