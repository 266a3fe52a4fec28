"""Payment use cases: record (explicit or oldest-first allocation), reverse, read, list."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from duewise_events.catalogue import AllocationSnapshot, PaymentReceived, PaymentReversed
from duewise_service.problems import DomainError, not_found
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from invoice.models import (
    OUTBOX,
    Allocation,
    Customer,
    Invoice,
    Payment,
    PaymentCreate,
    PaymentReverse,
    utcnow,
)
from invoice.service.common import Page, check_limit, decode_cursor, lock_customer, page_of

#: Statuses a payment may be allocated to (explicitly); auto-allocation skips disputed ones.
PAYABLE = ("open", "partially_paid", "disputed")


async def record_payment(
    *, session: AsyncSession, data: PaymentCreate, imported: bool = False
) -> Payment:
    """Record a payment, allocate it (as given, or oldest due first) and stage PaymentReceived.

    `imported`: another system's history loaded by bulk import (the event says so).
    """
    customer = await lock_customer(
        session,
        customer_id=data.customer_id,
        external_id=data.customer_external_id,
        field="customer_id",
    )
    check_payment_currency(data, customer)
    if data.external_id is not None:
        existing = await session.scalar(
            select(Payment.id).where(col(Payment.external_id) == data.external_id)
        )
        if existing:
            raise duplicate_payment(data.external_id)
    if data.allocations is None:
        plan = await _oldest_first(session, customer, data.amount)
    else:
        plan = await _explicit(session, customer, data)
    payment = new_payment(data, customer, plan)
    session.add(payment)
    await session.flush()
    allocations: list[Allocation] = []
    snapshots: list[AllocationSnapshot] = []
    for position, (invoice, amount) in enumerate(plan):
        invoice.balance -= amount
        invoice.refresh_status()
        invoice.updated_at = utcnow()
        session.add(invoice)
        allocations.append(
            Allocation(
                payment_id=payment.id, invoice_id=invoice.id, amount=amount, position=position
            )
        )
        snapshots.append(allocation_snapshot(invoice, amount))
    session.add_all(allocations)
    await OUTBOX.add(session, received_event(payment, data, snapshots, imported=imported))
    return payment


async def reverse_payment(
    *, session: AsyncSession, payment_id: str, data: PaymentReverse
) -> Payment:
    """Reverse a payment (bounced check, chargeback…), reopening its invoices; PaymentReversed."""
    customer_id = await session.scalar(
        select(Payment.customer_id).where(col(Payment.id) == payment_id)
    )
    if customer_id is None:
        raise not_found("payment", payment_id)
    await lock_customer(session, customer_id=customer_id)
    stmt = (
        select(Payment)
        .where(col(Payment.id) == payment_id)
        .execution_options(populate_existing=True)
    )
    payment: Payment = (await session.execute(stmt)).scalar_one()
    if payment.reversed_at is not None:
        raise DomainError(
            409,
            "Payment already reversed",
            f"payment {payment.id} was reversed at {payment.reversed_at}",
        )
    allocations = await payment_allocations(session, [payment.id])
    ids = [a.invoice_id for a in allocations[payment.id]]
    rows = await session.execute(
        select(Invoice).where(col(Invoice.id).in_(ids)).execution_options(populate_existing=True)
    )
    invoices = {inv.id: inv for inv in rows.scalars()}
    snapshots: list[AllocationSnapshot] = []
    now = utcnow()
    for alloc in allocations[payment.id]:
        invoice = invoices[alloc.invoice_id]
        invoice.balance += alloc.amount
        invoice.refresh_status()
        invoice.updated_at = now
        session.add(invoice)
        snapshots.append(allocation_snapshot(invoice, alloc.amount))
    payment.reversed_at = now
    payment.reversal_reason = data.reason
    payment.reversal_note = data.note
    payment.unallocated = 0
    session.add(payment)
    await OUTBOX.add(
        session,
        PaymentReversed(
            customer_id=payment.customer_id,
            payment_id=payment.id,
            amount=payment.amount,
            currency=payment.currency,
            method=payment.method,
            reason=data.reason,
            allocations=snapshots,
            reversed_at=now,
        ),
    )
    return payment


async def get_payment(*, session: AsyncSession, payment_id: str) -> Payment:
    """The payment, or a 404."""
    payment = await session.get(Payment, payment_id)
    if payment is None:
        raise not_found("payment", payment_id)
    return payment


async def payment_allocations(
    session: AsyncSession, payment_ids: Sequence[str]
) -> dict[str, list[Allocation]]:
    """The allocations of each payment, in order."""
    out: dict[str, list[Allocation]] = {p: [] for p in payment_ids}
    if not payment_ids:
        return out
    stmt = (
        select(Allocation)
        .where(col(Allocation.payment_id).in_(payment_ids))
        .order_by(col(Allocation.payment_id), col(Allocation.position))
    )
    for alloc in (await session.execute(stmt)).scalars():
        out[alloc.payment_id].append(alloc)
    return out


async def list_payments(
    *,
    session: AsyncSession,
    limit: int = 50,
    cursor: str | None = None,
    customer_id: str | None = None,
    invoice_id: str | None = None,
) -> Page[Payment]:
    """Payments oldest first, filtered, keyset-paginated by id."""
    check_limit(limit)
    stmt = select(Payment).order_by(col(Payment.id)).limit(limit + 1)
    after = decode_cursor(cursor)
    if after:
        stmt = stmt.where(col(Payment.id) > after)
    if customer_id is not None:
        stmt = stmt.where(col(Payment.customer_id) == customer_id)
    if invoice_id is not None:
        sub = select(Allocation.payment_id).where(col(Allocation.invoice_id) == invoice_id)
        stmt = stmt.where(col(Payment.id).in_(sub))
    rows = (await session.execute(stmt)).scalars().all()
    return page_of(rows, limit, lambda p: p.id)


async def _oldest_first(
    session: AsyncSession, customer: Customer, amount: int
) -> list[tuple[Invoice, int]]:
    stmt = (
        select(Invoice)
        .where(
            col(Invoice.customer_id) == customer.id,
            col(Invoice.status).in_(("open", "partially_paid")),
            col(Invoice.balance) > 0,
        )
        .order_by(col(Invoice.due_date), col(Invoice.issue_date), col(Invoice.id))
        .execution_options(populate_existing=True)
    )
    plan: list[tuple[Invoice, int]] = []
    left = amount
    for invoice in (await session.execute(stmt)).scalars():
        if left == 0:
            break
        take = min(left, invoice.balance)
        plan.append((invoice, take))
        left -= take
    return plan


async def _explicit(
    session: AsyncSession, customer: Customer, data: PaymentCreate
) -> list[tuple[Invoice, int]]:
    given = data.allocations or []
    ids = list(dict.fromkeys(a.invoice_id for a in given))
    rows = await session.execute(
        select(Invoice).where(col(Invoice.id).in_(ids)).execution_options(populate_existing=True)
    )
    invoices = {inv.id: inv for inv in rows.scalars()}
    return plan_allocations(data, customer, invoices)


def allocation_snapshot(invoice: Invoice, amount: int) -> AllocationSnapshot:
    return AllocationSnapshot(
        invoice_id=invoice.id,
        amount=amount,
        invoice_balance=invoice.balance,
        invoice_status=invoice.status,
        due_date=invoice.due_date,
    )


def check_payment_currency(data: PaymentCreate, customer: Customer) -> None:
    if data.currency != customer.currency:
        raise DomainError(
            422,
            "Currency mismatch",
            f"currency: the payment is in {data.currency} but customer {customer.id} is billed "
            f"in {customer.currency}",
            "currency",
        )


def duplicate_payment(external_id: str) -> DomainError:
    return DomainError(
        409,
        "Duplicate external id",
        f"external_id: a payment with external_id {external_id!r} already exists",
        "external_id",
    )


def plan_allocations(
    data: PaymentCreate, customer: Customer, invoices: Mapping[str, Invoice]
) -> list[tuple[Invoice, int]]:
    """Check `data`'s explicit allocations against `invoices` (current, by id); the plan.

    Pure: shared by `record_payment` and the bulk path (`service.bulk`).
    """
    given = data.allocations or []
    remaining = {inv.id: inv.balance for inv in invoices.values()}
    plan: list[tuple[Invoice, int]] = []
    for i, alloc in enumerate(given):
        field = f"allocations/{i}"
        invoice = invoices.get(alloc.invoice_id)
        if invoice is None:
            raise not_found("invoice", alloc.invoice_id, f"{field}/invoice_id")
        if invoice.customer_id != customer.id:
            raise DomainError(
                422,
                "Invoice of another customer",
                f"{field}/invoice_id: invoice {invoice.id} is not customer {customer.id}'s",
                f"{field}/invoice_id",
            )
        if invoice.status not in PAYABLE:
            raise DomainError(
                422,
                "Invoice not payable",
                f"{field}/invoice_id: invoice {invoice.id} is {invoice.status}",
                f"{field}/invoice_id",
            )
        if alloc.amount > remaining[invoice.id]:
            raise DomainError(
                422,
                "Allocation exceeds balance",
                f"{field}/amount: {alloc.amount} is more than invoice {invoice.id}'s open balance "
                f"{remaining[invoice.id]}",
                f"{field}/amount",
            )
        remaining[invoice.id] -= alloc.amount
        plan.append((invoice, alloc.amount))
    total = sum(a.amount for a in given)
    if total > data.amount:
        raise DomainError(
            422,
            "Allocations exceed payment",
            f"allocations: they sum to {total}, more than the payment amount {data.amount}",
            "allocations",
        )
    return plan


def new_payment(
    data: PaymentCreate, customer: Customer, plan: Sequence[tuple[Invoice, int]]
) -> Payment:
    """The payment row (not yet added to the session) for a checked `data` and its plan."""
    allocated = sum(amount for _, amount in plan)
    return Payment(
        customer_id=customer.id,
        unallocated=data.amount - allocated,
        **data.model_dump(exclude={"customer_id", "customer_external_id", "allocations"}),
    )


def received_event(
    payment: Payment,
    data: PaymentCreate,
    snapshots: list[AllocationSnapshot],
    *,
    imported: bool = False,
) -> PaymentReceived:
    return PaymentReceived(
        customer_id=payment.customer_id,
        payment_id=payment.id,
        amount=payment.amount,
        currency=payment.currency,
        method=data.method,
        received_at=payment.received_at,
        reference=payment.reference,
        allocations=snapshots,
        unallocated=payment.unallocated,
        in_transit=payment.in_transit,
        imported=imported,
    )
