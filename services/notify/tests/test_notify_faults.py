"""A sender killed (SIGKILL) mid-send: no duplicate in the common case, and the documented
rule for the one narrow window (between the server's 250 and the mark): sent again, with
the same Message-ID. Real sender processes, a real SMTP server, the real database."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.smtp import SMTP
from notify.models import Message
from notify_kit import apply_events, customer, invoice, messages, parse
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

pytestmark = pytest.mark.slow


class StallingHandler:
    """Takes mail; while `stall` is set, holds the final reply until released or cut off.

    A message counts as accepted only once the 250 is returned: when the client dies first,
    aiosmtpd cancels this coroutine and the message is not delivered, as with a real MTA.
    """

    def __init__(self) -> None:
        self.stall = False
        self.arrived = 0
        self.accepted: list[bytes] = []
        self.release = asyncio.Event()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.arrived += 1
        if self.stall:
            await self.release.wait()
        self.accepted.append(envelope.original_content or envelope.content)
        return "250 OK"


@pytest.fixture
async def smtp() -> AsyncIterator[tuple[StallingHandler, int]]:
    handler = StallingHandler()
    server = await asyncio.get_running_loop().create_server(
        lambda: SMTP(handler, hostname="faults"), "127.0.0.1", 0
    )
    try:
        yield handler, server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


def _sender(db_url: str, smtp_port: int, log: Path, **extra: str) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "NOTIFY_DATABASE_URL": db_url,
        "SMTP_URL": f"smtp://127.0.0.1:{smtp_port}",
        "NOTIFY_SENDER_LEASE_S": "2",
        "NOTIFY_SENDER_INTERVAL_S": "0.2",
        **extra,
    }
    return subprocess.Popen(
        [sys.executable, "-m", "notify.cli", "sender"],
        env=env,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
    )


def _read(log: Path) -> str:
    return log.read_text()


async def _until(ok: Callable[[], Any], what: str, log: Path, within: float = 40.0) -> None:
    deadline = time.monotonic() + within
    while not await ok() if asyncio.iscoroutinefunction(ok) else not ok():
        assert time.monotonic() < deadline, f"{what} not reached; sender log:\n{_read(log)}"
        await asyncio.sleep(0.05)


def _kill(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        _kill(proc)


async def _the_message(maker: async_sessionmaker[AsyncSession]) -> Message:
    [msg] = await messages(maker, kind="invoice")
    return msg


async def test_a_sender_killed_mid_send_leaves_no_duplicate(
    maker: async_sessionmaker[AsyncSession],
    notify_db_url: str,
    smtp: tuple[StallingHandler, int],
    tmp_path: Path,
) -> None:
    handler, port = smtp
    c = customer(email_="killed@acme.example")
    await apply_events(maker, c, invoice(c.customer_id))
    log = tmp_path / "sender.log"

    handler.stall = True  # the first sender is inside the SMTP transaction when it dies
    first = _sender(notify_db_url, port, log)
    try:
        await _until(lambda: handler.arrived == 1, "the message data reaching the server", log)
    finally:
        _kill(first)
    await asyncio.sleep(0.2)  # the server notices the connection is gone
    assert handler.accepted == []
    assert (await _the_message(maker)).status == "sending"  # claimed, never marked

    handler.stall = False
    second = _sender(notify_db_url, port, log)
    try:

        async def sent() -> bool:
            return (await _the_message(maker)).status == "sent"

        await _until(sent, "the message marked sent by the second sender", log)
    finally:
        _stop(second)
    msg = await _the_message(maker)
    assert len(handler.accepted) == 1  # exactly one delivery
    assert msg.attempts == 2  # the dead sender's claim, then the one that sent it
    assert parse(handler.accepted[0])["Message-ID"] == msg.header_message_id


async def test_the_narrow_window_sends_again_with_the_same_message_id(
    maker: async_sessionmaker[AsyncSession],
    notify_db_url: str,
    smtp: tuple[StallingHandler, int],
    tmp_path: Path,
) -> None:
    """The documented rule (notify/sender.py): a sender that dies after the server's 250 and
    before its mark commits leaves the message to be sent again - at least once, never
    lost - and the copy carries the same Message-ID for the recipient's mail system."""
    handler, port = smtp
    c = customer(email_="window@acme.example")
    await apply_events(maker, c, invoice(c.customer_id))
    log = tmp_path / "sender.log"

    first = _sender(notify_db_url, port, log, NOTIFY_SENDER_PAUSE_AFTER_SEND_S="60")
    try:
        await _until(lambda: len(handler.accepted) == 1, "the server's 250", log)
    finally:
        _kill(first)  # between the 250 and the mark
    second = _sender(notify_db_url, port, log)
    try:

        async def sent() -> bool:
            return (await _the_message(maker)).status == "sent"

        await _until(sent, "the message marked sent by the second sender", log)
    finally:
        _stop(second)
    msg = await _the_message(maker)
    assert len(handler.accepted) == 2
    ids = {parse(raw)["Message-ID"] for raw in handler.accepted}
    assert ids == {msg.header_message_id}
