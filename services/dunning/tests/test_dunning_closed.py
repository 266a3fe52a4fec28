"""A voided or written-off invoice has nothing pending at once, and the scheduler, run at the
step's time with the invoice service agreeing it is still owed, emits nothing for it."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import pytest
from duewise_events.catalogue import Event, InvoiceIssued, InvoiceVoided, InvoiceWrittenOff
from dunning.clock import clock
from dunning.scheduler import Scheduler
from dunning_kit import FakeLastLook, at, customer, feed, invoice, outbox, steps
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker


def voided(inv: InvoiceIssued) -> Event:
    return InvoiceVoided(
        customer_id=inv.customer_id,
        invoice_id=inv.invoice_id,
        reason="issued in error",
        voided_at=dt.datetime(2026, 2, 2, tzinfo=dt.UTC),
    )


def written_off(inv: InvoiceIssued) -> Event:
    return InvoiceWrittenOff(
        customer_id=inv.customer_id,
        invoice_id=inv.invoice_id,
        amount=inv.balance,
        currency=inv.currency,
        reason="uncollectable",
        written_off_at=dt.datetime(2026, 2, 2, tzinfo=dt.UTC),
    )


@pytest.mark.parametrize("close", [voided, written_off])
async def test_closed_invoice_is_never_reminded(
    maker: async_sessionmaker[AsyncSession], close: Callable[[InvoiceIssued], Event]
) -> None:
    clock.set(at("2026-02-01 10:00"), freeze=True)
    c = customer()
    closed, open_ = invoice(c.customer_id), invoice(c.customer_id)
    await feed(maker, c, closed, open_, close(closed))
    assert {r.status for r in await steps(maker, closed.invoice_id)} == {"cancelled"}
    assert {r.status for r in await steps(maker, open_.invoice_id)} == {"pending"}
    # At the due date, even a last look that (wrongly) still lists the closed invoice as
    # owed cannot bring it back: only the open invoice is in the reminder.
    clock.set(at("2026-03-02 08:30"), freeze=True)
    look = FakeLastLook(
        {c.customer_id: {closed.invoice_id: closed.total, open_.invoice_id: open_.total}}
    )
    await Scheduler(maker, clock=clock, last_look=look, name="s1").run_once()
    (reminder,) = await outbox(maker, "reminder.due.v1")
    assert [i["invoice_id"] for i in reminder["invoices"]] == [open_.invoice_id]
