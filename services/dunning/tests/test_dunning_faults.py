"""A real kill mid-claim: the scheduler CLI as a subprocess, SIGKILLed after its claim
committed and before it emitted; a second scheduler emits the step once, after the lease."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import signal
import subprocess
import sys
import time

import pytest
from dunning.clock import clock
from dunning.models import ScheduledStep
from dunning.scheduler import Scheduler
from dunning_kit import FakeLastLook, at, customer, feed, invoice, outbox, steps
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlmodel import col, select

LEASE_S = 30


async def _claimed(maker: async_sessionmaker[AsyncSession]) -> list[ScheduledStep]:
    async with maker() as session:
        return list(
            (
                await session.scalars(
                    select(ScheduledStep).where(col(ScheduledStep.status) == "claimed")
                )
            ).all()
        )


@pytest.mark.slow
async def test_scheduler_killed_mid_claim_emits_once_after_the_lease(
    maker: async_sessionmaker[AsyncSession], dunning_db_url: str
) -> None:
    clock.set(at("2026-02-01 10:00"), freeze=True)
    c = customer()
    inv = invoice(c.customer_id)
    await feed(maker, c, inv)
    start = at("2026-03-02 08:30")  # due_today is due (09:30 Berlin, in the window)
    env = {
        **os.environ,
        "DUNNING_DATABASE_URL": dunning_db_url,
        "DUNNING_CLOCK": start.isoformat(),
        "DUNNING_SCHEDULER_LEASE_S": str(LEASE_S),
        "DUNNING_SCHEDULER_INTERVAL_S": "0.2",
        "DUNNING_SCHEDULER_PAUSE_AFTER_CLAIM_S": "600",  # fault hook: hold after the claim
        "INVOICE_API_URL": "http://127.0.0.1:9",  # never reached: it dies before the last look
        "DUEWISE_ENV": "test",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "dunning.cli", "scheduler"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60
        while not (claimed := await _claimed(maker)):
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            assert time.monotonic() < deadline, "the subprocess never claimed"
            await asyncio.sleep(0.1)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert proc.returncode == -signal.SIGKILL
    stderr = proc.stderr.read().decode() if proc.stderr else ""
    assert "fault hook: pausing" in stderr  # it was killed inside the hook, after the claim
    assert {r.step_key for r in claimed} >= {"due_today"}
    (lease_until,) = {r.lease_until for r in claimed}
    assert lease_until is not None
    assert await outbox(maker, "reminder.due.v1") == []

    look = FakeLastLook({c.customer_id: {inv.invoice_id: inv.total}})
    survivor = Scheduler(maker, clock=clock, last_look=look, name="survivor")
    clock.set(lease_until - dt.timedelta(seconds=1), freeze=True)
    result = await survivor.run_once()
    assert (result.claimed, result.emitted) == (0, 0)  # the dead worker's lease still holds
    assert await outbox(maker, "reminder.due.v1") == []
    clock.set(lease_until + dt.timedelta(seconds=1), freeze=True)  # past the lease
    assert (await survivor.run_once()).emitted == 1
    assert (await survivor.run_once()).emitted == 0
    (reminder,) = await outbox(maker, "reminder.due.v1")
    assert reminder["step_key"] == "due_today"
    assert [i["invoice_id"] for i in reminder["invoices"]] == [inv.invoice_id]
    rows = {r.step_key: r for r in await steps(maker, inv.invoice_id)}
    assert rows["due_today"].status == "emitted"
    assert rows["due_today"].claimed_by == "survivor"
    assert rows["due_today"].notice_id == reminder["notice_id"]
