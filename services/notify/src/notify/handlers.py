"""What notify does with each event: keep the projections it words messages from, and record
the messages each event calls for (the sender sends them after the commit).

`APPLY` is the table of contents. Every handler runs inside the consumer's transaction
(inbox row + effect), so a redelivered event has no second effect, and every message is
keyed by its cause, so even a re-applied one is recorded once. An event about a customer
or invoice not seen yet (topics are not ordered against each other) is held in
`held_event` and re-applied, in arrival order, when the missing one arrives.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from duewise_events.catalogue import (
    BY_TYPE,
    AllocationSnapshot,
    CreditHoldPlaced,
    CreditNoteIssued,
    CustomerCreated,
    CustomerGoodStanding,
    CustomerUpdated,
    DisputeOpened,
    DisputeResolved,
    Event,
    InvoiceIssued,
    InvoiceVoided,
    InvoiceWrittenOff,
    PaymentReceived,
    PaymentReversed,
    PromiseBroken,
    ReminderDue,
    RiskSignalRaised,
)
from duewise_events.envelope import Envelope
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from notify.config import get_settings
from notify.models import OUTBOX, WebhookEndpoint, utcnow
from notify.service import projection
from notify.service.enqueue import enqueue
from notify.service.projection import CUSTOMER_LOCK, CustomerState, HeldRow, tx_state

__all__ = ["APPLY", "CUSTOMER_LOCK", "HANDLERS", "apply", "fan_out", "handle"]


# --- holding what arrives early ----------------------------------------------------------


async def _hold(session: AsyncSession, waiting_for: str, event: Event, event_id: str) -> None:
    await projection.hold(
        session,
        waiting_for=waiting_for,
        event_id=event_id,
        type_=event.TYPE,
        payload=event.model_dump(mode="json"),
        now=utcnow(),
    )


async def _reapply(session: AsyncSession, held: list[HeldRow]) -> None:
    """Re-apply, oldest first, what waited (each may be held again)."""
    for row in held:
        await apply(session, BY_TYPE[row.type].model_validate(row.payload), row.event_id)


async def _customer(
    session: AsyncSession, customer_id: str, event: Event, event_id: str
) -> CustomerState | None:
    """The projected customer, or None after holding `event` until it is created."""
    customer = await projection.customer(session, customer_id)
    if customer is None:
        await _hold(session, f"customer:{customer_id}", event, event_id)
    return customer


# --- customers ---------------------------------------------------------------------------


async def on_customer(session: AsyncSession, event: CustomerCreated, event_id: str) -> None:
    await projection.upsert_customer(
        session,
        {
            "id": event.customer_id,
            "name": event.name,
            "currency": event.currency,
            "timezone": event.timezone,
            "country": event.country,
            "locale": event.locale,
            "owner": event.owner,
            "contacts": [c.model_dump(mode="json") for c in event.contacts],
            "invoice_preferences": event.invoice_preferences.model_dump(mode="json"),
            "now": utcnow(),
        },
    )
    await _reapply(session, await projection.take_held(session, f"customer:{event.customer_id}"))


# --- invoices ----------------------------------------------------------------------------


async def on_invoice_issued(session: AsyncSession, event: InvoiceIssued, event_id: str) -> None:
    if await _customer(session, event.customer_id, event, event_id) is None:
        return
    held = await projection.insert_invoice_and_take_held(
        session,
        {
            "id": event.invoice_id,
            "customer_id": event.customer_id,
            "number": event.number,
            "kind": event.kind,
            "issue_date": event.issue_date,
            "due_date": event.due_date,
            "currency": event.currency,
            "total": event.total,
            "balance": event.balance,
            "status": "open" if event.balance else "paid",
            "po_number": event.po_number,
            "gl_code": event.gl_code,
            "lines": [line.model_dump(mode="json") for line in event.lines],
            "imported": event.imported,
            "now": utcnow(),
        },
        waiting_for=f"invoice:{event.invoice_id}",
    )
    # "Always deliver the invoices immediately" - but not another system's history.
    if not event.imported:
        await enqueue(
            session,
            key=f"invoice:{event.invoice_id}",
            kind="invoice",
            channel="email",
            cause_type=event.TYPE,
            cause_id=event_id,
            customer_id=event.customer_id,
            invoice_ids=[event.invoice_id],
        )
    await _reapply(session, held)


async def _set(
    session: AsyncSession,
    event: Event,
    event_id: str,
    invoice_id: str,
    *,
    status: str,
    balance: int | None = None,
) -> None:
    known = await projection.set_invoice(
        session, invoice_id, status=status, balance=balance, now=utcnow()
    )
    if not known:
        await _hold(session, f"invoice:{invoice_id}", event, event_id)


async def on_voided(session: AsyncSession, event: InvoiceVoided, event_id: str) -> None:
    await _set(session, event, event_id, event.invoice_id, status="void", balance=0)


async def on_written_off(session: AsyncSession, event: InvoiceWrittenOff, event_id: str) -> None:
    await _set(session, event, event_id, event.invoice_id, status="written_off", balance=0)


async def on_credit_note(session: AsyncSession, event: CreditNoteIssued, event_id: str) -> None:
    await _set(
        session,
        event,
        event_id,
        event.invoice_id,
        status=event.invoice_status,
        balance=event.invoice_balance,
    )


async def on_dispute_opened(session: AsyncSession, event: DisputeOpened, event_id: str) -> None:
    await _set(session, event, event_id, event.invoice_id, status="disputed")


async def on_dispute_resolved(session: AsyncSession, event: DisputeResolved, event_id: str) -> None:
    await _set(
        session,
        event,
        event_id,
        event.invoice_id,
        status=event.invoice_status,
        balance=event.invoice_balance,
    )


# --- payments ----------------------------------------------------------------------------


async def _allocate(
    session: AsyncSession, event: Event, event_id: str, allocations: list[AllocationSnapshot]
) -> bool:
    """Apply each allocation's balance and status; False (event held) if one is unknown."""
    # Per invoice the last allocation wins, as when they were applied one after the other.
    wanted = {a.invoice_id: (a.invoice_balance, a.invoice_status) for a in allocations}
    missing = await projection.allocate(session, wanted, utcnow())
    if missing:
        # Held whole, and re-applied whole: allocations carry absolute balances.
        await _hold(session, f"invoice:{missing[0]}", event, event_id)
        return False
    return True


async def on_payment_received(session: AsyncSession, event: PaymentReceived, event_id: str) -> None:
    customer = await _customer(session, event.customer_id, event, event_id)
    if customer is None or not await _allocate(session, event, event_id, event.allocations):
        return
    before = (customer.on_time_streak, customer.good_standing_since)
    settled = [a for a in event.allocations if a.invoice_status == "paid"]
    on_time = [a for a in settled if event.received_at <= a.due_date]
    # The streak counts invoices settled by their due date; a late one starts it again.
    for alloc in sorted(settled, key=lambda a: (a.due_date, a.invoice_id)):
        customer.on_time_streak = (
            customer.on_time_streak + 1 if event.received_at <= alloc.due_date else 0
        )
        if event.received_at > alloc.due_date:
            customer.good_standing_since = None
    if (customer.on_time_streak, customer.good_standing_since) != before:
        await projection.set_streak(session, event.customer_id, customer)
    if event.imported or event.in_transit:
        return  # history is not news; money in transit has not arrived yet
    if on_time:
        await enqueue(
            session,
            key=f"thank_you:{event.payment_id}",
            kind="thank_you",
            channel="email",
            cause_type=event.TYPE,
            cause_id=event_id,
            customer_id=event.customer_id,
            invoice_ids=[a.invoice_id for a in on_time],
            data={"early": all(event.received_at < a.due_date for a in on_time)},
        )
    streak = get_settings().good_standing_streak
    if customer.on_time_streak >= streak and customer.good_standing_since is None:
        customer.good_standing_since = event.received_at
        await projection.set_streak(session, event.customer_id, customer)
        await enqueue(
            session,
            key=f"good_standing:{event.customer_id}:{event.payment_id}",
            kind="good_standing",
            channel="email",
            cause_type=event.TYPE,
            cause_id=event_id,
            customer_id=event.customer_id,
            data={"streak": customer.on_time_streak},
        )
        await OUTBOX.add(
            session,
            CustomerGoodStanding(
                customer_id=event.customer_id,
                on_time_streak=customer.on_time_streak,
                reached_on=event.received_at,
            ),
        )


async def on_payment_reversed(session: AsyncSession, event: PaymentReversed, event_id: str) -> None:
    customer = await _customer(session, event.customer_id, event, event_id)
    if customer is None or not await _allocate(session, event, event_id, event.allocations):
        return
    # Money that bounced was never on time.
    if (customer.on_time_streak, customer.good_standing_since) != (0, None):
        customer.on_time_streak, customer.good_standing_since = 0, None
        await projection.set_streak(session, event.customer_id, customer)


# --- dunning and risk --------------------------------------------------------------------


async def on_reminder_due(session: AsyncSession, event: ReminderDue, event_id: str) -> None:
    if await _customer(session, event.customer_id, event, event_id) is None:
        return
    invoice_ids = [i.invoice_id for i in event.invoices]
    data = event.model_dump(mode="json", include={"template", "recipient_roles", "invoices"})
    data.update(total_balance=event.total_balance, total_fees=event.total_fees)
    data["currency"] = event.currency
    if event.channel == "task":
        # A step for a person (call the customer): the owner is told, the customer is not.
        await _alert(
            session,
            key=f"task:{event.notice_id}",
            cause=event,
            cause_id=event_id,
            title=f"Task due: {event.step_key}",
            detail=f"Step {event.step_key} of policy {event.policy_id} is due today "
            f"for {len(invoice_ids)} invoice(s).",
            invoice_ids=invoice_ids,
        )
        return
    await enqueue(
        session,
        key=f"reminder:{event.notice_id}",
        kind="reminder",
        channel=event.channel,
        tone=event.tone,
        step_key=event.step_key,
        cause_type=event.TYPE,
        cause_id=event_id,
        customer_id=event.customer_id,
        invoice_ids=invoice_ids,
        data=data,
    )


async def on_credit_hold(session: AsyncSession, event: CreditHoldPlaced, event_id: str) -> None:
    if await _customer(session, event.customer_id, event, event_id) is None:
        return
    if event.notify_customer:
        await enqueue(
            session,
            key=f"credit_hold:{event.hold_id}",
            kind="credit_hold",
            channel="email",
            cause_type=event.TYPE,
            cause_id=event_id,
            customer_id=event.customer_id,
            data={
                "overdue_balance": event.overdue_balance,
                "currency": event.currency,
                "reason": event.reason,
            },
        )
    await _alert(
        session,
        key=f"alert:credit_hold:{event.hold_id}",
        cause=event,
        cause_id=event_id,
        title="Account placed on credit hold",
        detail=event.reason,
    )


async def on_promise_broken(session: AsyncSession, event: PromiseBroken, event_id: str) -> None:
    if await _customer(session, event.customer_id, event, event_id) is None:
        return
    await _alert(
        session,
        key=f"alert:promise_broken:{event.promise_id}",
        cause=event,
        cause_id=event_id,
        title="Promise to pay broken",
        detail=f"The promise due {event.promised_date.isoformat()} was not kept "
        f"({event.paid} of {event.amount} {event.currency} minor units arrived).",
        invoice_ids=event.invoice_ids,
    )


async def on_signal(session: AsyncSession, event: RiskSignalRaised, event_id: str) -> None:
    if await _customer(session, event.customer_id, event, event_id) is None:
        return
    detail = event.summary + (f" {event.recommendation}" if event.recommendation else "")
    await _alert(
        session,
        key=f"alert:signal:{event.signal_id}",
        cause=event,
        cause_id=event_id,
        title=("Good sign: " if event.positive else "Warning sign: ")
        + event.kind.replace("_", " "),
        detail=detail,
    )


async def _alert(
    session: AsyncSession,
    *,
    key: str,
    cause: Event,
    cause_id: str,
    title: str,
    detail: str,
    invoice_ids: list[str] | None = None,
) -> None:
    """Tell the collector who owns the account (the team's inbox if nobody does)."""
    await enqueue(
        session,
        key=key,
        kind="alert",
        channel="email",
        cause_type=cause.TYPE,
        cause_id=cause_id,
        customer_id=cause.customer_id,
        invoice_ids=invoice_ids or [],
        data={"title": title, "detail": detail},
    )


# --- outbound webhooks -------------------------------------------------------------------


async def fan_out(session: AsyncSession, envelope: Envelope) -> None:
    """One webhook message per enabled endpoint that wants this event's type.

    The endpoints are read once per transaction (the consumer's covers a batch of events):
    only the consumer calls this, and nothing it does changes an endpoint.
    """
    _, state = await tx_state(session)
    endpoints = state.endpoints
    if endpoints is None:
        endpoints = list(
            (
                await session.scalars(select(WebhookEndpoint).where(col(WebhookEndpoint.enabled)))
            ).all()
        )
        state.endpoints = endpoints
    for endpoint in endpoints:
        if endpoint.event_types and envelope.type not in endpoint.event_types:
            continue
        payload: dict[str, Any] = {
            "type": envelope.type,
            "timestamp": envelope.time.isoformat(),
            "data": envelope.data,
        }
        await enqueue(
            session,
            key=f"webhook:{endpoint.id}:{envelope.id}",
            kind="webhook",
            channel="webhook",
            cause_type=envelope.type,
            cause_id=envelope.id,
            customer_id=envelope.key,
            target=endpoint.id,
            data=payload,
        )


# --- the table of contents ---------------------------------------------------------------

_Apply = Callable[[AsyncSession, Event, str], Awaitable[None]]

APPLY: dict[type[Event], _Apply] = {
    CustomerCreated: on_customer,  # type: ignore[dict-item]
    CustomerUpdated: on_customer,  # type: ignore[dict-item]
    InvoiceIssued: on_invoice_issued,  # type: ignore[dict-item]
    InvoiceVoided: on_voided,  # type: ignore[dict-item]
    InvoiceWrittenOff: on_written_off,  # type: ignore[dict-item]
    CreditNoteIssued: on_credit_note,  # type: ignore[dict-item]
    PaymentReceived: on_payment_received,  # type: ignore[dict-item]
    PaymentReversed: on_payment_reversed,  # type: ignore[dict-item]
    DisputeOpened: on_dispute_opened,  # type: ignore[dict-item]
    DisputeResolved: on_dispute_resolved,  # type: ignore[dict-item]
    ReminderDue: on_reminder_due,  # type: ignore[dict-item]
    CreditHoldPlaced: on_credit_hold,  # type: ignore[dict-item]
    PromiseBroken: on_promise_broken,  # type: ignore[dict-item]
    RiskSignalRaised: on_signal,  # type: ignore[dict-item]
}


async def apply(session: AsyncSession, event: Event, event_id: str) -> None:
    """Apply one event (also used to re-apply held ones)."""
    fn = APPLY.get(type(event))
    if fn is not None:
        await fn(session, event, event_id)


async def handle(session: AsyncSession, event: Event, envelope: Envelope) -> None:
    """The EventConsumer's entry point: webhooks first (they need no projection), then the
    projections and messages."""
    # One customer's events come from several topics, worked concurrently. Without this
    # lock a reminder could be held for a customer created in a concurrent transaction
    # that looked for held events before the hold committed, and wait for ever. Taken once
    # per customer per transaction (it is held until the transaction ends).
    await projection.lock_customer(session, envelope.key)
    await fan_out(session, envelope)
    await apply(session, event, envelope.id)


#: Every type: webhooks may subscribe to any of them.
HANDLERS = {cls: handle for cls in BY_TYPE.values()}
