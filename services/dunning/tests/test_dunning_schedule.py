"""Schedules from invoice.events: planned on issue, cancelled on payment, paused on dispute,
held events re-applied; the scheduler emits each step once, one notice per customer per day."""

from __future__ import annotations

import asyncio
import datetime as dt

from dunning.clock import clock
from dunning.scheduler import Scheduler
from dunning_kit import FakeLastLook, at, customer, dispute, feed, invoice, outbox, payment, steps
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker


def scheduler(
    maker: async_sessionmaker[AsyncSession], look: FakeLastLook, name: str = "s1"
) -> Scheduler:
    return Scheduler(maker, clock=clock, last_look=look, name=name, lease=dt.timedelta(seconds=60))


async def test_invoice_issued_plans_the_default_policy(
    maker: async_sessionmaker[AsyncSession],
) -> None:
    clock.set(at("2026-02-01 10:00"), freeze=True)
    c = customer()
    inv = invoice(c.customer_id)
    await feed(maker, c, inv)
    rows = await steps(maker, inv.invoice_id)
    assert [(r.step_key, r.local_date.isoformat(), r.status) for r in rows] == [
        ("before_7", "2026-02-23", "pending"),
        ("due_today", "2026-03-02", "pending"),
        ("overdue_3", "2026-03-05", "pending"),
        ("overdue_10", "2026-03-12", "pending"),
        ("overdue_20", "2026-03-23", "pending"),  # Sunday the 22nd moves to Monday
        ("final_30", "2026-04-01", "pending"),
        ("hold_45", "2026-04-16", "pending"),
    ]
    assert rows[0].send_at == at("2026-02-23 08:00")  # 09:00 Berlin, winter time
    assert rows[5].send_at == at("2026-04-01 07:00")  # 09:00 Berlin, summer time
    assert rows[5].fee_amount == 4000


async def test_payment_cancels_pending_steps_at_once(
    maker: async_sessionmaker[AsyncSession],
) -> None:
    clock.set(at("2026-02-01 10:00"), freeze=True)
    c = customer()
    inv = invoice(c.customer_id)
    await feed(maker, c, inv, payment(inv))
    assert {r.status for r in await steps(maker, inv.invoice_id)} == {"cancelled"}


async def test_payment_before_its_invoice_is_held_then_applied(
    maker: async_sessionmaker[AsyncSession],
) -> None:
    clock.set(at("2026-02-01 10:00"), freeze=True)
    c = customer()
    inv = invoice(c.customer_id)
    # The invoice before its customer, and the payment before the invoice.
    await feed(maker, inv, payment(inv), c)
    assert {r.status for r in await steps(maker, inv.invoice_id)} == {"cancelled"}


async def test_three_invoices_due_the_same_day_give_one_reminder(
    maker: async_sessionmaker[AsyncSession],
) -> None:
    clock.set(at("2026-02-01 10:00"), freeze=True)
    c = customer()
    invs = [invoice(c.customer_id) for _ in range(3)]
    await feed(maker, c, *invs)
    clock.set(at("2026-03-05 08:30"), freeze=True)
    look = FakeLastLook({c.customer_id: {i.invoice_id: i.total for i in invs}})
    result = await scheduler(maker, look).run_once()
    reminders = await outbox(maker, "reminder.due.v1")
    assert len(reminders) == 1
    assert reminders[0]["step_key"] == "overdue_3"
    assert sorted(i["invoice_id"] for i in reminders[0]["invoices"]) == sorted(
        i.invoice_id for i in invs
    )
    assert result.emitted == 3
    # catch-up: before_7 and due_today were due too, but only the latest step went out
    for inv in invs:
        by_key = {r.step_key: r.status for r in await steps(maker, inv.invoice_id)}
        assert by_key["before_7"] == by_key["due_today"] == "skipped"
        assert by_key["overdue_3"] == "emitted"
        assert by_key["overdue_10"] == "pending"


async def test_dispute_pauses_the_invoice(maker: async_sessionmaker[AsyncSession]) -> None:
    clock.set(at("2026-02-01 10:00"), freeze=True)
    c = customer()
    inv = invoice(c.customer_id)
    await feed(maker, c, inv, dispute(inv))
    clock.set(at("2026-03-02 08:30"), freeze=True)
    look = FakeLastLook({c.customer_id: {inv.invoice_id: inv.total}})
    result = await scheduler(maker, look).run_once()
    assert result.emitted == 0
    assert result.deferred == 1
    assert await outbox(maker, "reminder.due.v1") == []
    assert "emitted" not in {r.status for r in await steps(maker, inv.invoice_id)}


async def test_last_look_paid_at_the_invoice_service_emits_nothing(
    maker: async_sessionmaker[AsyncSession],
) -> None:
    clock.set(at("2026-02-01 10:00"), freeze=True)
    c = customer()
    inv = invoice(c.customer_id)
    await feed(maker, c, inv)
    clock.set(at("2026-03-02 08:00"), freeze=True)
    # The payment was posted in the same second: the projection does not know yet.
    look = FakeLastLook({c.customer_id: {}})
    result = await scheduler(maker, look).run_once()
    assert result.emitted == 0
    assert result.cancelled == 1
    assert await outbox(maker, "reminder.due.v1") == []


async def test_two_schedulers_emit_each_step_once(maker: async_sessionmaker[AsyncSession]) -> None:
    clock.set(at("2026-02-01 10:00"), freeze=True)
    customers = [customer() for _ in range(5)]
    invs = [invoice(c.customer_id) for c in customers for _ in range(4)]
    await feed(maker, *customers, *invs)
    clock.set(at("2026-03-02 08:30"), freeze=True)
    look = FakeLastLook({c.customer_id: {i.invoice_id: i.total for i in invs} for c in customers})
    a, b = scheduler(maker, look, "a"), scheduler(maker, look, "b")
    for _ in range(3):
        await asyncio.gather(a.run_once(), b.run_once())
    reminders = await outbox(maker, "reminder.due.v1")
    assert len(reminders) == 5  # one per customer
    assert sorted(r["customer_id"] for r in reminders) == sorted(c.customer_id for c in customers)
    assert sum(len(r["invoices"]) for r in reminders) == 20


async def test_a_killed_claim_is_emitted_once_after_the_lease(
    maker: async_sessionmaker[AsyncSession],
) -> None:
    clock.set(at("2026-02-01 10:00"), freeze=True)
    c = customer()
    inv = invoice(c.customer_id)
    await feed(maker, c, inv)
    now = at("2026-03-02 08:30")
    clock.set(now, freeze=True)
    look = FakeLastLook({c.customer_id: {inv.invoice_id: inv.total}})
    dead = scheduler(maker, look, "dead")
    assert await dead.claim(now)  # claimed, then the process died before emitting
    survivor = scheduler(maker, look, "survivor")
    assert (await survivor.run_once()).claimed == 0  # the lease still protects the claim
    clock.set(now + dt.timedelta(seconds=61), freeze=True)
    assert (await survivor.run_once()).emitted == 1
    assert (await survivor.run_once()).emitted == 0
    assert len(await outbox(maker, "reminder.due.v1")) == 1


async def test_final_notice_assesses_a_fee_with_a_deterministic_id(
    maker: async_sessionmaker[AsyncSession],
) -> None:
    clock.set(at("2026-02-01 10:00"), freeze=True)
    c = customer()
    inv = invoice(c.customer_id)
    await feed(maker, c, inv)
    clock.set(at("2026-04-01 07:30"), freeze=True)
    look = FakeLastLook({c.customer_id: {inv.invoice_id: inv.total}})
    await scheduler(maker, look).run_once()
    fees = await outbox(maker, "fee.assessed.v1")
    assert [(f["fee_id"], f["amount"], f["kind"]) for f in fees] == [
        (f"{inv.invoice_id}:final_30:late_fee", 4000, "late_fee")
    ]
    stages = await outbox(maker, "dunning.stage_changed.v1")
    assert stages[-1]["to_stage"] == "final_notice"


async def test_after_downtime_a_step_waits_for_the_next_send_window(
    maker: async_sessionmaker[AsyncSession],
) -> None:
    clock.set(at("2026-02-01 10:00"), freeze=True)
    c = customer()  # Europe/Berlin, DE
    inv = invoice(c.customer_id)
    await feed(maker, c, inv)
    look = FakeLastLook({c.customer_id: {inv.invoice_id: inv.total}})
    worker = scheduler(maker, look)
    # Back up on Thursday at 21:00 Berlin: overdue_3 (09:00 today) is due but the window closed.
    clock.set(at("2026-03-05 20:00"), freeze=True)
    result = await worker.run_once()
    assert (result.emitted, result.deferred) == (0, 1)
    assert await outbox(maker, "reminder.due.v1") == []
    row = {r.step_key: r for r in await steps(maker, inv.invoice_id)}["overdue_3"]
    assert row.status == "pending"
    assert row.send_at == at("2026-03-06 08:00")  # Friday 09:00 Berlin
    assert row.local_date == dt.date(2026, 3, 6)
    clock.set(at("2026-03-06 07:59"), freeze=True)
    assert (await worker.run_once()).claimed == 0
    clock.set(at("2026-03-06 08:00"), freeze=True)
    assert (await worker.run_once()).emitted == 1
    (reminder,) = await outbox(maker, "reminder.due.v1")
    assert reminder["step_key"] == "overdue_3"
    assert reminder["local_date"] == "2026-03-06"


async def test_a_step_due_before_a_weekend_waits_for_monday(
    maker: async_sessionmaker[AsyncSession],
) -> None:
    clock.set(at("2026-02-01 10:00"), freeze=True)
    c = customer(tz="America/New_York", country="US")
    inv = invoice(c.customer_id)
    await feed(maker, c, inv)
    look = FakeLastLook({c.customer_id: {inv.invoice_id: inv.total}})
    worker = scheduler(maker, look)
    clock.set(at("2026-03-07 15:00"), freeze=True)  # Saturday 10:00 in New York
    assert (await worker.run_once()).deferred == 1
    row = {r.step_key: r for r in await steps(maker, inv.invoice_id)}["overdue_3"]
    assert row.send_at == at("2026-03-09 13:00")  # Monday 09:00 EDT (DST began on the 8th)
    assert await outbox(maker, "reminder.due.v1") == []


async def test_a_claim_retried_after_the_window_closed_is_deferred(
    maker: async_sessionmaker[AsyncSession],
) -> None:
    clock.set(at("2026-02-01 10:00"), freeze=True)
    c = customer()
    inv = invoice(c.customer_id)
    await feed(maker, c, inv)
    look = FakeLastLook({c.customer_id: {inv.invoice_id: inv.total}})
    late = at("2026-03-02 15:59:30")  # 16:59:30 Berlin: a worker claims due_today, then dies
    assert await scheduler(maker, look, "dead").claim(late)
    survivor = scheduler(maker, look, "survivor")
    clock.set(late + dt.timedelta(seconds=61), freeze=True)  # lease over, and so is the window
    result = await survivor.run_once()
    # before_7 was still pending too: catch-up skips it, and due_today waits for the window
    assert (result.claimed, result.skipped, result.emitted, result.deferred) == (2, 1, 0, 1)
    row = {r.step_key: r for r in await steps(maker, inv.invoice_id)}["due_today"]
    assert (row.status, row.send_at) == ("pending", at("2026-03-03 08:00"))
    clock.set(at("2026-03-03 08:00"), freeze=True)
    assert (await survivor.run_once()).emitted == 1
    assert [r["step_key"] for r in await outbox(maker, "reminder.due.v1")] == ["due_today"]


async def test_fee_invoices_are_reminded_but_never_charged_fees(
    maker: async_sessionmaker[AsyncSession],
) -> None:
    clock.set(at("2026-02-01 10:00"), freeze=True)
    c = customer()
    inv = invoice(c.customer_id)
    fee_inv = invoice(c.customer_id, total=40_00).model_copy(update={"kind": "fee"})
    await feed(maker, c, inv, fee_inv)
    fee_rows = {r.step_key: r for r in await steps(maker, fee_inv.invoice_id)}
    assert {r.status for r in fee_rows.values()} == {"pending"}  # owed, so reminded
    assert len(fee_rows) == 7
    assert fee_rows["final_30"].fee_amount == fee_rows["final_30"].interest_amount == 0
    assert "this invoice is itself a fee" in (fee_rows["final_30"].reason or "")
    assert {r.step_key: r for r in await steps(maker, inv.invoice_id)}[
        "final_30"
    ].fee_amount == 4000
    clock.set(at("2026-04-01 07:30"), freeze=True)  # final_30, 09:30 Berlin
    look = FakeLastLook({c.customer_id: {inv.invoice_id: inv.total, fee_inv.invoice_id: 40_00}})
    assert (await scheduler(maker, look).run_once()).emitted == 2
    (reminder,) = await outbox(maker, "reminder.due.v1")
    assert {i["invoice_id"]: i["fee_amount"] for i in reminder["invoices"]} == {
        inv.invoice_id: 4000,
        fee_inv.invoice_id: 0,
    }
    fees = await outbox(maker, "fee.assessed.v1")
    assert [f["invoice_id"] for f in fees] == [inv.invoice_id]  # no fee on the fee


async def test_a_payment_in_transit_holds_reminders_then_resumes_after_seven_days(
    maker: async_sessionmaker[AsyncSession],
) -> None:
    clock.set(at("2026-03-03 10:00"), freeze=True)
    c = customer()
    inv = invoice(c.customer_id)
    await feed(maker, c, inv, payment(inv, 50_00, received_at=dt.date(2026, 3, 3), in_transit=True))
    look = FakeLastLook({c.customer_id: {inv.invoice_id: 50_00}})
    worker = scheduler(maker, look)
    clock.set(at("2026-03-05 08:30"), freeze=True)  # overdue_3, covered by the transfer
    result = await worker.run_once()
    assert (result.emitted, result.deferred) == (0, 1)
    # Never settled nor reversed: the hold lapses after 7 days and dunning resumes.
    clock.set(at("2026-03-12 08:30"), freeze=True)  # overdue_10
    assert (await worker.run_once()).emitted == 1
    assert [r["step_key"] for r in await outbox(maker, "reminder.due.v1")] == ["overdue_10"]


async def test_small_batches_never_split_a_customer_day(
    maker: async_sessionmaker[AsyncSession],
) -> None:
    """Batch of 2: a customer's 5 invoices due the same day still go out in one notice."""
    clock.set(at("2026-03-31 10:00"), freeze=True)  # overdue_20 is the latest step due
    big = customer()
    others = [customer() for _ in range(3)]
    invs = [invoice(big.customer_id) for _ in range(5)] + [invoice(c.customer_id) for c in others]
    await feed(maker, big, *others, *invs)
    look = FakeLastLook(
        {c.customer_id: {i.invoice_id: i.total for i in invs} for c in [big, *others]}
    )
    await scheduler(maker, look).run_once()  # overdue_20 (catch-up) goes out today
    clock.set(at("2026-04-01 07:30"), freeze=True)  # final_30 for every invoice, 09:30 Berlin
    worker = Scheduler(maker, clock=clock, last_look=look, name="small", batch=2)
    skipped = emitted = 0
    for _ in range(10):
        result = await worker.run_once()
        skipped, emitted = skipped + result.skipped, emitted + result.emitted
        if result.claimed == 0:
            break
    assert (skipped, emitted) == (0, 8)
    finals = [r for r in await outbox(maker, "reminder.due.v1") if r["step_key"] == "final_30"]
    by_customer = {r["customer_id"]: sorted(i["invoice_id"] for i in r["invoices"]) for r in finals}
    assert len(finals) == len(by_customer) == 4  # exactly one notice per customer-day
    assert by_customer == {
        c.customer_id: sorted(i.invoice_id for i in invs if i.customer_id == c.customer_id)
        for c in [big, *others]
    }
    for inv in invs:
        row = {r.step_key: r for r in await steps(maker, inv.invoice_id)}["final_30"]
        assert (row.status, row.note) == ("emitted", None)
    fees = await outbox(maker, "fee.assessed.v1")
    assert sorted(f["fee_id"] for f in fees if f["step_key"] == "final_30") == sorted(
        f"{i.invoice_id}:final_30:late_fee" for i in invs
    )
