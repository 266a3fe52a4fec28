"""Liveness and readiness as the work loops see them (relay, consumer, scheduler, sender).

Each loop calls `beat()` every time round, including while it waits for a broker or a
database that is down: liveness means "the loop is turning", never "the dependencies are
up". `set_ready` reports whether the loop can do its work right now (connected, leading),
which is what a readiness probe may reflect. One worker per process, so module state.
"""

from __future__ import annotations

import time

_last_beat = time.monotonic()
_ready = False
_why = "starting"


def beat() -> None:
    """The work loop went round once more."""
    global _last_beat
    _last_beat = time.monotonic()


def set_ready(ready: bool, why: str = "") -> None:
    """Whether the loop can do its work now; `why` says what it waits for when it cannot."""
    global _ready, _why
    _ready, _why = ready, why
    beat()


def seconds_since_beat() -> float:
    return time.monotonic() - _last_beat


def readiness() -> tuple[bool, str]:
    return _ready, _why
