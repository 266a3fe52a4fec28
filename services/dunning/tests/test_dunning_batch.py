"""The consumer applies up to 50 events in one transaction, reading customers, policies,
assignments and held-event keys once for all of them (service/cache.py): the outcome must be
exactly that of one transaction per event, with fewer statements."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from duewise_events.catalogue import (
    CustomerUpdated,
    DisputeResolved,
    Event,
    InvoiceIssued,
    PaymentReceived,
    RiskScoreChanged,
)
from duewise_events.envelope import Envelope
from dunning.clock import clock
from dunning.handlers import handle
from dunning.models import metadata
from dunning_kit import at, customer, dispute, feed, invoice, payment
from sqlalchemy import event as sa_event
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

NOW = at("2026-03-20 10:00")

#: What the events decide, without ids and instants the database or the clock chose.
STATE = {
    "customer": "SELECT id, timezone, country, tags, risk_band FROM customer",
    "invoice": "SELECT id, balance, status, disputed, in_transit, last_payment_date FROM invoice",
    "held_event": "SELECT waiting_for, event_id, type FROM held_event",
    "scheduled_step": "SELECT invoice_id, step_key, step_index, send_at, local_date, status,"
    " policy_id, policy_version, channel, fee_amount, interest_amount, reason, note"
    " FROM scheduled_step",
    "pause": "SELECT invoice_id, kind, ref, lifted_at FROM pause",
    "outbox": "SELECT type, key, payload FROM outbox",
    "promise": "SELECT id, paid, status FROM promise",
    "customer_stage": "SELECT customer_id, stage, on_hold FROM customer_stage",
}
VIP_SPEC = {
    "name": "VIP",
    "steps": [
        {"key": "due", "offset_days": 0, "template": "reminder_due_today"},
        {"key": "late5", "offset_days": 5, "template": "reminder_overdue"},
        {"key": "late15", "offset_days": 15, "template": "final_notice", "fee": {"flat": 500}},
    ],
}


def _two_invoices(first: InvoiceIssued, amount: int, second: InvoiceIssued) -> PaymentReceived:
    """`amount` on each of two invoices (the second's balance as if it were `first`'s)."""
    paid = payment(first, amount)
    again = paid.allocations[0].model_copy(
        update={"invoice_id": second.invoice_id, "invoice_balance": first.total - 2 * amount}
    )
    return paid.model_copy(update={"amount": 2 * amount, "allocations": [*paid.allocations, again]})


def _events() -> list[Event]:
    a, b, c = customer("cus_a"), customer("cus_b"), customer("cus_c", tz="America/Chicago")
    a1, a2 = invoice(a.customer_id, iid="inv_a1"), invoice(a.customer_id, iid="inv_a2")
    late = invoice(a.customer_id, iid="inv_a3", due=dt.date(2026, 3, 2), total=300_00)
    b1, b2 = invoice(b.customer_id, iid="inv_b1"), invoice(b.customer_id, iid="inv_b2")
    c1 = invoice(c.customer_id, iid="inv_c1", due=dt.date(2026, 3, 16))
    a9 = invoice(a.customer_id, iid="inv_a9", due=dt.date(2026, 3, 1), total=100_00)
    opened = dispute(b2)
    return [
        b1,  # before its customer: held, released by b
        a,
        payment(a2, 40_00),  # before its invoice: held, released by a2
        a1,
        a2,
        late,
        b,
        b2,
        opened,
        DisputeResolved(
            customer_id=b.customer_id,
            dispute_id=opened.dispute_id,
            invoice_id=b2.invoice_id,
            outcome="customer_wrong",
            invoice_balance=b2.total,
            invoice_status="open",
            resolved_at=NOW,
        ),
        payment(a1),  # paid in full: its steps cancelled
        late,  # issued again (another event id): known, so recomputed as it stands
        payment(b1, 30_00, in_transit=True),
        _two_invoices(late, 50_00, a9),  # inv_a9 is not issued yet: held, released by a9
        _two_invoices(late, 20_00, late),  # the same invoice twice: one allocation at a time
        payment(a2, 60_00),  # pays the promise off; nothing overdue left of cus_a's? released
        c,
        c1,
        RiskScoreChanged(
            customer_id=c.customer_id, score=70, band="high", factors=[], changed_at=NOW
        ),
        CustomerUpdated(
            customer_id=a.customer_id,
            name="A, moved",
            currency="EUR",
            timezone="Asia/Tokyo",
            country="JP",
            locale="ja-JP",
            payment_terms_days=30,
        ),
        invoice(a.customer_id, iid="inv_a4", due=dt.date(2026, 4, 1)),
        a9,
    ]


async def _seed(engine: AsyncEngine) -> None:
    """A policy for high risk, one only customer b has (an override); a promise of customer
    a's on inv_a2, which its payments count towards; customer a on credit hold."""
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO policy (id, name, version, spec, segment_tags, segment_risk_band,"
                " priority, is_default, created_at, updated_at) VALUES"
                " ('pol_high', 'High', 2, :spec, '[]', 'high', 5, false, now(), now()),"
                " ('pol_big', 'Big', 1, :spec, '[]', NULL, 1, false, now(), now())"
            ),
            {"spec": json.dumps(VIP_SPEC)},
        )
        await conn.execute(
            text(
                "INSERT INTO policy_assignment (customer_id, policy_id, assigned_by, assigned_at)"
                " VALUES ('cus_b', 'pol_big', 'test', now())"
            )
        )
        await conn.execute(
            text(
                "INSERT INTO promise (id, customer_id, invoice_ids, amount, paid, currency,"
                " promised_date, status, created_at)"
                " VALUES ('prm_a', 'cus_a', '[\"inv_a2\"]', 10000, 0, 'EUR', '2026-03-25',"
                " 'open', now())"
            )
        )
        await conn.execute(
            text(
                "INSERT INTO customer_stage (customer_id, stage, on_hold, hold_id, updated_at)"
                " VALUES ('cus_a', 'credit_hold', true, 'hold_a', now())"
            )
        )


async def _state(engine: AsyncEngine) -> dict[str, list[str]]:
    async with engine.connect() as conn:
        return {
            name: sorted(
                json.dumps(list(row), default=str) for row in (await conn.execute(text(q))).all()
            )
            for name, q in STATE.items()
        }


async def _truncate(engine: AsyncEngine) -> None:
    tables = [t.name for t in metadata.sorted_tables if t.name != "api_token"]
    async with engine.begin() as conn:
        await conn.execute(text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))


async def _batch(maker: async_sessionmaker[AsyncSession], events: list[Event]) -> None:
    """As the consumer's batch: every event through `handle`, all in one transaction."""
    async with maker() as session, session.begin():
        for event in events:
            await handle(session, event, Envelope.wrap(event, source="duewise/invoice"))


async def test_a_batch_in_one_transaction_ends_as_one_transaction_per_event(
    maker: async_sessionmaker[AsyncSession], dunning_engine: AsyncEngine
) -> None:
    clock.set(NOW, freeze=True)
    events = _events()
    await _seed(dunning_engine)
    await feed(maker, *events)
    one_by_one = await _state(dunning_engine)
    await _truncate(dunning_engine)
    await _seed(dunning_engine)
    await _batch(maker, events)
    batched = await _state(dunning_engine)
    assert batched == one_by_one
    # and the mix did what it is there for
    assert one_by_one["held_event"] == []
    assert any('"pol_big", 1' in s for s in one_by_one["scheduled_step"])  # b's override
    assert any('"pol_high", 2' in s for s in one_by_one["scheduled_step"])  # c turned high
    assert any("Asia/Tokyo" in s for s in one_by_one["scheduled_step"])  # a moved
    assert any('"cancelled"' in s for s in one_by_one["scheduled_step"])
    assert one_by_one["promise"] == ['["prm_a", 10000, "kept"]']
    invoices = one_by_one["invoice"]
    assert '["inv_b1", 7000, "partially_paid", false, 3000, "2026-03-02"]' in invoices
    # set last by the payment held for inv_a9, re-applied when inv_a9 is issued
    assert '["inv_a3", 25000, "partially_paid", false, 0, "2026-03-02"]' in invoices
    assert any(s.startswith('["inv_b1", "in_transit"') for s in one_by_one["pause"])
    steps = one_by_one["scheduled_step"]
    paid = [s for s in steps if s.startswith('["inv_a1"')]
    assert paid
    assert all('"pending"' not in s for s in paid)
    assert any('"invoice is paid"' in s for s in paid)
    assert any("promise.kept" in s for s in one_by_one["outbox"])


async def test_a_batch_costs_one_statement_per_invoice_and_per_payment_in_full(
    maker: async_sessionmaker[AsyncSession], dunning_engine: AsyncEngine
) -> None:
    """Customer, policies, assignment and held keys once per batch; then one statement per
    invoice writes it and its steps (service/issue.py), and one per payment in full applies
    it and cancels the invoice's steps (service/payments.py)."""
    clock.set(NOW, freeze=True)
    c = customer()
    await feed(maker, c)
    invoices = [invoice(c.customer_id) for _ in range(20)]
    statements: list[str] = []

    def count(_c: Connection, _cur: Any, statement: str, *_: Any) -> None:
        statements.append(statement)

    sa_event.listen(dunning_engine.sync_engine, "before_cursor_execute", count)
    try:
        await _batch(maker, list(invoices))
        issued = len(statements)
        await _batch(maker, [payment(i) for i in invoices])
    finally:
        sa_event.remove(dunning_engine.sync_engine, "before_cursor_execute", count)
    once = 4  # the customer, the policies, the customer's assignment, the held keys
    assert issued <= once + len(invoices), statements
    assert len(statements) - issued <= 1 + len(invoices), statements[issued:]  # customer
    async with maker() as session:
        by_status = dict(
            (
                await session.execute(
                    text("SELECT status, count(*) FROM scheduled_step GROUP BY status")
                )
            ).all()
        )
    assert sum(by_status.values()) == 7 * len(invoices)
    assert by_status.get("pending", 0) == 0
