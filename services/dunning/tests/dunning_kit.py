"""Test data for the dunning service: invoice.events facts and small helpers around them."""

from __future__ import annotations

import datetime as dt
import itertools
from typing import Any

from duewise_events.catalogue import (
    AllocationSnapshot,
    CustomerCreated,
    DisputeOpened,
    Event,
    InvoiceIssued,
    PaymentReceived,
)
from dunning.handlers import apply
from dunning.lastlook import LastLook
from dunning.models import ScheduledStep
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlmodel import col, select

_seq = itertools.count(1)


def at(text_: str) -> dt.datetime:
    """An aware UTC instant from 'YYYY-MM-DD HH:MM'."""
    return dt.datetime.fromisoformat(text_).replace(tzinfo=dt.UTC)


def customer(
    cid: str | None = None, *, tz: str = "Europe/Berlin", country: str = "DE"
) -> CustomerCreated:
    n = next(_seq)
    return CustomerCreated(
        customer_id=cid or f"cus_{n}",
        name=f"Customer {n}",
        currency="EUR",
        timezone=tz,
        country=country,
        locale="de-DE",
        payment_terms_days=30,
    )


def invoice(
    customer_id: str,
    *,
    due: dt.date = dt.date(2026, 3, 2),
    issued: dt.date = dt.date(2026, 1, 30),
    total: int = 100_00,
    iid: str | None = None,
) -> InvoiceIssued:
    n = next(_seq)
    return InvoiceIssued(
        customer_id=customer_id,
        invoice_id=iid or f"inv_{n}",
        number=f"INV-{n:05d}",
        issue_date=issued,
        due_date=due,
        currency="EUR",
        total=total,
        balance=total,
    )


def payment(inv: InvoiceIssued, amount: int | None = None, **kw: Any) -> PaymentReceived:
    amount = inv.total if amount is None else amount
    left = inv.total - amount
    return PaymentReceived(
        customer_id=inv.customer_id,
        payment_id=f"pay_{next(_seq)}",
        amount=amount,
        currency="EUR",
        method="wire",
        received_at=kw.pop("received_at", inv.due_date),
        allocations=[
            AllocationSnapshot(
                invoice_id=inv.invoice_id,
                amount=amount,
                invoice_balance=left,
                invoice_status="paid" if left == 0 else "partially_paid",
                due_date=inv.due_date,
            )
        ],
        **kw,
    )


def dispute(inv: InvoiceIssued) -> DisputeOpened:
    return DisputeOpened(
        customer_id=inv.customer_id,
        dispute_id=f"dsp_{next(_seq)}",
        invoice_id=inv.invoice_id,
        reason="wrong quantity",
        opened_at=dt.datetime(2026, 2, 1, tzinfo=dt.UTC),
    )


async def feed(maker: async_sessionmaker[AsyncSession], *events: Event) -> None:
    """Apply events as the consumer would: each in its own transaction."""
    for event in events:
        async with maker() as session, session.begin():
            await apply(session, event, f"evt_{next(_seq)}")


async def steps(maker: async_sessionmaker[AsyncSession], invoice_id: str) -> list[ScheduledStep]:
    async with maker() as session:
        return list(
            (
                await session.scalars(
                    select(ScheduledStep)
                    .where(col(ScheduledStep.invoice_id) == invoice_id)
                    .order_by(col(ScheduledStep.step_index))
                )
            ).all()
        )


async def outbox(maker: async_sessionmaker[AsyncSession], type_: str) -> list[dict[str, Any]]:
    async with maker() as session:
        rows = await session.execute(
            text("SELECT payload FROM outbox WHERE type = :t ORDER BY id"), {"t": type_}
        )
        return [dict(r[0]) for r in rows]


class FakeLastLook(LastLook):
    """The invoice service's answer, as a dict of customer -> {invoice id: balance}."""

    def __init__(self, open_: dict[str, dict[str, int]] | None = None) -> None:
        self.open = open_
        self.calls = 0

    async def open_balances(self, customer_id: str) -> dict[str, int]:
        self.calls += 1
        if self.open is None:
            raise AssertionError("no answer configured")
        return self.open.get(customer_id, {})
