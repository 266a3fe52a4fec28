"""The consumer's handlers over a batch: many events of several customers in one transaction
(as EventConsumer applies up to 50), out of order, with what each transaction remembers of a
customer (its lock, its row, its streak) kept only for that transaction."""

from __future__ import annotations

import datetime as dt

from duewise_events.catalogue import AllocationSnapshot, Event, PaymentReceived
from notify.handlers import CUSTOMER_LOCK, handle
from notify.models import CustomerProjection, HeldEvent, InvoiceProjection
from notify_kit import customer, invoice, messages, payment, reminder, wrap
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlmodel import select


async def _one_transaction(maker: async_sessionmaker[AsyncSession], *events: Event) -> None:
    async with maker() as session, session.begin():
        for event in events:
            envelope = wrap(event)
            await handle(session, envelope.event(), envelope)


async def test_a_batch_out_of_order_ends_as_the_events_say(
    maker: async_sessionmaker[AsyncSession],
) -> None:
    a, b = customer(), customer()
    a1, a2 = invoice(a.customer_id), invoice(a.customer_id, imported=True)
    b1 = invoice(b.customer_id, due=dt.date(2026, 12, 20))
    paid_b1 = payment(b1, received_at=dt.date(2026, 12, 18))  # on time
    notice = reminder([a1])
    # Invoice before its customer, payment before its invoice, customers interleaved, and
    # the same reminder twice: all in one transaction.
    await _one_transaction(maker, a1, paid_b1, b, a, b1, a2, notice, notice)

    async with maker() as session:
        held = (await session.scalars(select(HeldEvent))).all()
        invoices = {i.id: i for i in (await session.scalars(select(InvoiceProjection))).all()}
        b_row = await session.get(CustomerProjection, b.customer_id)
    assert held == []  # every early event was applied when what it waited for arrived
    assert invoices[b1.invoice_id].status == "paid"
    assert invoices[b1.invoice_id].balance == 0
    assert invoices[a1.invoice_id].status == "open"
    assert invoices[a2.invoice_id].imported
    assert b_row is not None
    assert b_row.on_time_streak == 1
    kinds = sorted((m.kind, m.idempotency_key) for m in await messages(maker))
    assert kinds == sorted(
        [
            ("invoice", f"invoice:{a1.invoice_id}"),
            ("invoice", f"invoice:{b1.invoice_id}"),
            ("thank_you", f"thank_you:{paid_b1.payment_id}"),
            ("reminder", f"reminder:{notice.notice_id}"),
        ]
    )  # the imported invoice is not delivered; the reminder is recorded once


async def test_a_payment_with_an_unknown_invoice_changes_nothing_until_it_arrives(
    maker: async_sessionmaker[AsyncSession],
) -> None:
    c = customer()
    known, later = invoice(c.customer_id), invoice(c.customer_id)
    both = PaymentReceived(
        customer_id=c.customer_id,
        payment_id="pay_both",
        amount=known.total + later.total,
        currency="EUR",
        method="wire",
        received_at=known.due_date,
        allocations=[
            AllocationSnapshot(
                invoice_id=i.invoice_id,
                amount=i.total,
                invoice_balance=0,
                invoice_status="paid",
                due_date=i.due_date,
            )
            for i in (known, later)
        ],
    )
    await _one_transaction(maker, c, known, both)
    async with maker() as session:
        row = await session.get(InvoiceProjection, known.invoice_id)
        held = (await session.scalars(select(HeldEvent))).all()
    assert row is not None
    assert (row.status, row.balance) == ("open", known.total)
    assert [h.waiting_for for h in held] == [f"invoice:{later.invoice_id}"]

    await _one_transaction(maker, later)
    async with maker() as session:
        rows = (await session.scalars(select(InvoiceProjection))).all()
        c_row = await session.get(CustomerProjection, c.customer_id)
        left = (await session.scalars(select(HeldEvent))).all()
    assert {(r.status, r.balance) for r in rows} == {("paid", 0)}
    assert c_row is not None
    assert c_row.on_time_streak == 2
    assert left == []
    assert [m.kind for m in await messages(maker, kind="thank_you")] == ["thank_you"]


async def test_what_a_transaction_knows_of_a_customer_ends_with_it(
    maker: async_sessionmaker[AsyncSession],
) -> None:
    """The lock is taken again in the next transaction of the same session, and a customer
    missing in one transaction is found in the next."""
    c = customer()
    early = invoice(c.customer_id)

    async def customer_locks(session: AsyncSession) -> int:
        found = await session.execute(
            text(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted "
                "AND classid = :k AND pid = pg_backend_pid()"
            ),
            {"k": CUSTOMER_LOCK},
        )
        return int(found.scalar_one())

    async with maker() as session:
        async with session.begin():
            envelope = wrap(early)
            await handle(session, envelope.event(), envelope)  # held: no customer yet
            assert await customer_locks(session) == 1
        async with maker() as other, other.begin():
            created = wrap(c)
            await handle(other, created.event(), created)
        async with session.begin():
            assert await customer_locks(session) == 0
            again = wrap(invoice(c.customer_id))
            await handle(session, again.event(), again)
            assert await customer_locks(session) == 1
    assert sorted(m.kind for m in await messages(maker)) == ["invoice", "invoice"]
