"""Small helpers shared by the devstack modules: ports, log tails, stopping a process."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
from collections import deque
from pathlib import Path

LOCALHOST = "127.0.0.1"


def free_port(host: str = LOCALHOST) -> int:
    """A TCP port nothing listens on right now (the OS picks it; racy, but good enough)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def port_is_free(port: int, host: str = LOCALHOST) -> bool:
    """True when nothing accepts connections on host:port.

    Checked before starting a server: otherwise a readiness probe could succeed against
    whatever already listens there (an earlier run's orphan, a colleague's broker).
    """
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return False
    except OSError:
        return True


def log_tail(path: Path, lines: int = 30) -> str:
    """The last `lines` lines of a log file, or a note that there is none."""
    try:
        with path.open(encoding="utf-8", errors="replace") as f:
            return "".join(deque(f, maxlen=lines)).rstrip()
    except FileNotFoundError:
        return f"(no log at {path})"


def stop_popen(proc: subprocess.Popen[bytes], sig: signal.Signals, timeout: float) -> None:
    """Send `sig` to a child started in its own process group, wait, then SIGKILL the group.

    Children run in their own process group (process_group=0) so that a terminal's Ctrl-C
    reaches only the supervisor, which then stops them in order. The polite signal goes to
    the leader alone (a postmaster or uvicorn coordinates its own helpers); the SIGKILL goes
    to the whole group so that no helper outlives it.
    """
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(sig)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
