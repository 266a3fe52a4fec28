"""What dunning does with each invoice.events fact (the projection, then the schedule) and
with risk.events score changes (the customer's band, which policy segments match on).

`HANDLERS` is the table of contents. Every handler runs inside the consumer's transaction
(inbox row + effect). An event about an invoice or customer not seen yet is held in
`held_event` and re-applied, in arrival order, when the missing one arrives.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable
from zoneinfo import ZoneInfo

from duewise_events.catalogue import (
    BY_TYPE,
    AllocationSnapshot,
    CreditNoteIssued,
    CustomerCreated,
    CustomerUpdated,
    DisputeOpened,
    DisputeResolved,
    Event,
    InvoiceIssued,
    InvoiceVoided,
    InvoiceWrittenOff,
    PaymentReceived,
    PaymentReversed,
    PromiseKept,
    RiskScoreChanged,
)
from duewise_events.envelope import Envelope
from sqlalchemy import delete, exists, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from dunning.clock import clock
from dunning.models import (
    OUTBOX,
    CustomerProjection,
    HeldEvent,
    InvoiceProjection,
    Pause,
    Promise,
    utcnow,
)
from dunning.service.cache import (
    CONSUMER_CACHE,
    TransactionCache,
    customer_of,
    keep_customer,
    may_be_held,
    note_held,
    note_released,
)
from dunning.service.holds import release_if_cleared
from dunning.service.issue import insert_issued
from dunning.service.payments import allocate, closed
from dunning.service.schedule import InvoiceRow, open_invoice_ids, recompute, recompute_invoice

IN_TRANSIT_HOLD = dt.timedelta(days=7)


def local_today(customer: CustomerProjection | None, now: dt.datetime) -> dt.date:
    if customer is None:
        return now.date()
    return now.astimezone(ZoneInfo(customer.timezone)).date()


async def _hold(session: AsyncSession, waiting_for: str, event: Event, event_id: str) -> None:
    session.add(
        HeldEvent(
            waiting_for=waiting_for,
            event_id=event_id,
            type=event.TYPE,
            payload=event.model_dump(mode="json"),
        )
    )
    await session.flush()
    note_held(session, waiting_for)


async def _release_held(session: AsyncSession, waiting_for: str) -> None:
    """Re-apply, oldest first, what waited for `waiting_for` (it may be held again)."""
    if not await may_be_held(session, waiting_for):
        return
    held = (
        await session.scalars(
            delete(HeldEvent).where(col(HeldEvent.waiting_for) == waiting_for).returning(HeldEvent)
        )
    ).all()
    note_released(session, waiting_for)
    for row in sorted(held, key=lambda h: h.id or 0):
        event = BY_TYPE[row.type].model_validate(row.payload)
        await apply(session, event, row.event_id)


async def _invoice(
    session: AsyncSession, invoice_id: str, event: Event, event_id: str
) -> InvoiceProjection | None:
    """The projected invoice, or None after holding `event` until it is issued."""
    invoice = await session.get(InvoiceProjection, invoice_id, with_for_update=True)
    if invoice is None:
        await _hold(session, f"invoice:{invoice_id}", event, event_id)
    return invoice


# --- customers ----------------------------------------------------------------------------


async def on_customer(session: AsyncSession, event: CustomerCreated, event_id: str) -> None:
    row = await session.get(CustomerProjection, event.customer_id, with_for_update=True)
    roles = sorted({c.role for c in event.contacts if not c.undeliverable})
    moved = row is not None and (row.timezone, row.country) != (event.timezone, event.country)
    if row is None:
        row = CustomerProjection(
            id=event.customer_id, currency=event.currency, timezone="", country=""
        )
        session.add(row)
    row.name, row.currency, row.timezone, row.country = (
        event.name,
        event.currency,
        event.timezone,
        event.country,
    )
    row.tags, row.contact_roles, row.updated_at = list(event.tags), roles, utcnow()
    row.owner = event.owner
    await session.flush()
    keep_customer(session, row)
    await _release_held(session, f"customer:{event.customer_id}")
    if moved or isinstance(event, CustomerUpdated):
        for invoice_id in await open_invoice_ids(session, event.customer_id):
            await recompute(session, invoice_id, clock.now())


async def on_risk_score_changed(
    session: AsyncSession, event: RiskScoreChanged, event_id: str
) -> None:
    """Keep the customer's risk band; when it changes, re-plan the open invoices, so a policy
    whose segment is that band (or no longer is) applies to their pending steps."""
    row = await session.get(CustomerProjection, event.customer_id, with_for_update=True)
    if row is None:
        await _hold(session, f"customer:{event.customer_id}", event, event_id)
        return
    keep_customer(session, row)
    if row.risk_band == event.band:
        return
    row.risk_band, row.updated_at = event.band, utcnow()
    await session.flush()
    for invoice_id in await open_invoice_ids(session, event.customer_id):
        await recompute(session, invoice_id, clock.now())


# --- invoices -----------------------------------------------------------------------------


async def on_invoice_issued(session: AsyncSession, event: InvoiceIssued, event_id: str) -> None:
    customer = await customer_of(session, event.customer_id)
    if customer is None:
        await _hold(session, f"customer:{event.customer_id}", event, event_id)
        return
    issued = InvoiceRow(
        id=event.invoice_id,
        customer_id=event.customer_id,
        number=event.number,
        kind=event.kind,
        issue_date=event.issue_date,
        due_date=event.due_date,
        total=event.total,
        balance=event.balance,
        currency=event.currency,
        status="open" if event.balance else "paid",
        disputed=False,
        in_transit=0,
        last_payment_date=None,
        updated_at=utcnow(),
    )
    now = clock.now()
    # New (nearly always): the invoice and its steps in one statement. Known already: as it is.
    if not await insert_issued(session, issued, customer, now):
        invoice = await session.get(InvoiceProjection, event.invoice_id)
        assert invoice is not None  # it was there a statement ago, and nothing deletes one
        await recompute_invoice(session, invoice, now)
    await _release_held(session, f"invoice:{event.invoice_id}")


async def _set_status(
    session: AsyncSession, event: Event, event_id: str, invoice_id: str, status: str
) -> None:
    invoice = await _invoice(session, invoice_id, event, event_id)
    if invoice is None:
        return
    invoice.status, invoice.updated_at = status, utcnow()
    await recompute_invoice(session, invoice, clock.now())


async def on_invoice_voided(session: AsyncSession, event: InvoiceVoided, event_id: str) -> None:
    await _set_status(session, event, event_id, event.invoice_id, "void")


async def on_written_off(session: AsyncSession, event: InvoiceWrittenOff, event_id: str) -> None:
    await _set_status(session, event, event_id, event.invoice_id, "written_off")


async def on_credit_note(session: AsyncSession, event: CreditNoteIssued, event_id: str) -> None:
    invoice = await _invoice(session, event.invoice_id, event, event_id)
    if invoice is None:
        return
    invoice.balance, invoice.status = event.invoice_balance, event.invoice_status
    await recompute_invoice(session, invoice, clock.now())
    await _after_balance_change(session, event.customer_id)


# --- payments -----------------------------------------------------------------------------


async def _allocate(
    session: AsyncSession, event: Event, event_id: str, allocations: list[AllocationSnapshot]
) -> list[InvoiceProjection]:
    """Apply each allocation's new balance and status; hold the event for unknown invoices."""
    touched: list[InvoiceProjection] = []
    missing: list[str] = []
    for alloc in allocations:
        invoice = await session.get(InvoiceProjection, alloc.invoice_id, with_for_update=True)
        if invoice is None:
            missing.append(alloc.invoice_id)
            continue
        invoice.balance, invoice.status = alloc.invoice_balance, alloc.invoice_status
        invoice.updated_at = utcnow()
        touched.append(invoice)
    for invoice_id in missing:
        # The allocations carry absolute balances, so re-applying the whole event is safe.
        await _hold(session, f"invoice:{invoice_id}", event, event_id)
    return touched


async def on_payment_received(session: AsyncSession, event: PaymentReceived, event_id: str) -> None:
    now = clock.now()
    ids = [a.invoice_id for a in event.allocations]
    if len(set(ids)) < len(ids):  # an invoice twice in one payment: an allocation at a time
        await _payment_by_allocation(session, event, event_id, now)
        return
    paid = await allocate(session, event)
    for invoice_id in paid.missing:
        # The allocations carry absolute balances, so re-applying the whole event is safe.
        await _hold(session, f"invoice:{invoice_id}", event, event_id)
    for invoice in paid.invoices:
        if event.in_transit:
            session.add(_in_transit_pause(event, invoice.id))
        if not closed(invoice):  # a closed one's pending steps are cancelled already
            await recompute_invoice(session, invoice, now)
    if paid.promised:
        await _count_towards_promises(session, event, {i.id for i in paid.invoices})
    if paid.staged:  # no stage row: nothing to release
        await _after_balance_change(session, event.customer_id)


async def _payment_by_allocation(
    session: AsyncSession, event: PaymentReceived, event_id: str, now: dt.datetime
) -> None:
    touched = await _allocate(session, event, event_id, event.allocations)
    for invoice in touched:
        invoice.last_payment_date = event.received_at
        if event.in_transit:
            invoice.in_transit += next(
                a.amount for a in event.allocations if a.invoice_id == invoice.id
            )
            session.add(_in_transit_pause(event, invoice.id))
        await recompute_invoice(session, invoice, now)
    await _count_towards_promises(session, event, {i.id for i in touched})
    await _after_balance_change(session, event.customer_id)


def _in_transit_pause(event: PaymentReceived, invoice_id: str) -> Pause:
    return Pause(
        invoice_id=invoice_id,
        customer_id=None,
        kind="in_transit",
        reason=f"payment {event.payment_id} in transit ({event.method})",
        resume_on=event.received_at + IN_TRANSIT_HOLD,
        ref=event.payment_id,
    )


async def _count_towards_promises(
    session: AsyncSession, event: PaymentReceived, invoice_ids: set[str]
) -> None:
    open_ = (col(Promise.customer_id) == event.customer_id, col(Promise.status) == "open")
    # Most payments are not promised: a plain EXISTS before locking anything.
    if not invoice_ids or not await session.scalar(select(exists().where(*open_))):
        return
    promises = (await session.scalars(select(Promise).where(*open_).with_for_update())).all()
    for promise in promises:
        paid = sum(
            a.amount
            for a in event.allocations
            if a.invoice_id in promise.invoice_ids and a.invoice_id in invoice_ids
        )
        if not paid:
            continue
        promise.paid += paid
        if promise.paid >= promise.amount:
            promise.status, promise.resolved_at = "kept", clock.now()
            await OUTBOX.add(
                session,
                PromiseKept(
                    customer_id=promise.customer_id,
                    promise_id=promise.id,
                    invoice_ids=promise.invoice_ids,
                    amount=promise.amount,
                    currency=promise.currency,
                    promised_date=promise.promised_date,
                    kept_on=event.received_at,
                ),
            )
            await lift_pauses(session, kind="promise", ref=promise.id)


async def on_payment_reversed(session: AsyncSession, event: PaymentReversed, event_id: str) -> None:
    touched = await _allocate(session, event, event_id, event.allocations)
    await lift_pauses(session, kind="in_transit", ref=event.payment_id)
    for invoice in touched:
        invoice.in_transit = 0
        await recompute_invoice(session, invoice, clock.now())


async def _after_balance_change(session: AsyncSession, customer_id: str) -> None:
    now = clock.now()
    customer = await customer_of(session, customer_id)
    await release_if_cleared(session, customer_id, now, local_today(customer, now))


# --- disputes -----------------------------------------------------------------------------


async def on_dispute_opened(session: AsyncSession, event: DisputeOpened, event_id: str) -> None:
    invoice = await _invoice(session, event.invoice_id, event, event_id)
    if invoice is None:
        return
    invoice.disputed, invoice.status = True, "disputed"
    session.add(
        Pause(
            invoice_id=invoice.id,
            kind="dispute",
            reason=f"dispute {event.dispute_id}: {event.reason}",
            ref=event.dispute_id,
        )
    )
    await recompute_invoice(session, invoice, clock.now())


async def on_dispute_resolved(session: AsyncSession, event: DisputeResolved, event_id: str) -> None:
    invoice = await _invoice(session, event.invoice_id, event, event_id)
    if invoice is None:
        return
    invoice.disputed = False
    invoice.balance, invoice.status = event.invoice_balance, event.invoice_status
    await lift_pauses(session, kind="dispute", ref=event.dispute_id)
    await recompute_invoice(session, invoice, clock.now())
    await _after_balance_change(session, event.customer_id)


async def lift_pauses(session: AsyncSession, *, kind: str, ref: str) -> None:
    await session.execute(
        update(Pause)
        .where(col(Pause.kind) == kind, col(Pause.ref) == ref, col(Pause.lifted_at).is_(None))
        .values(lifted_at=clock.now())
    )


# --- the table of contents ----------------------------------------------------------------

_Apply = Callable[[AsyncSession, Event, str], Awaitable[None]]

APPLY: dict[type[Event], _Apply] = {
    CustomerCreated: on_customer,  # type: ignore[dict-item]
    CustomerUpdated: on_customer,  # type: ignore[dict-item]
    InvoiceIssued: on_invoice_issued,  # type: ignore[dict-item]
    PaymentReceived: on_payment_received,  # type: ignore[dict-item]
    PaymentReversed: on_payment_reversed,  # type: ignore[dict-item]
    CreditNoteIssued: on_credit_note,  # type: ignore[dict-item]
    InvoiceVoided: on_invoice_voided,  # type: ignore[dict-item]
    InvoiceWrittenOff: on_written_off,  # type: ignore[dict-item]
    DisputeOpened: on_dispute_opened,  # type: ignore[dict-item]
    DisputeResolved: on_dispute_resolved,  # type: ignore[dict-item]
    RiskScoreChanged: on_risk_score_changed,  # type: ignore[dict-item]
}


async def apply(session: AsyncSession, event: Event, event_id: str) -> None:
    """Apply one event (also used to re-apply held ones)."""
    await APPLY[type(event)](session, event, event_id)


async def handle(session: AsyncSession, event: Event, envelope: Envelope) -> None:
    """The EventConsumer's entry point for every type dunning reacts to."""
    # A batch of events shares the transaction: what it may read once, it reads once
    # (service/cache.py says what, and why that is safe).
    if CONSUMER_CACHE not in session.info:
        session.info[CONSUMER_CACHE] = TransactionCache()
    await apply(session, event, envelope.id)
    # Written before the next event of the batch runs: a write that fails fails this event,
    # which the consumer then retries alone (and may dead-letter), not the one after it.
    await session.flush()


HANDLERS: dict[type[Event], Callable[[AsyncSession, Event, Envelope], Awaitable[None]]] = {
    cls: handle for cls in APPLY
}
#: The topics those events arrive on (invoice.events, risk.events).
TOPICS: list[str] = sorted({cls.TOPIC for cls in APPLY})
