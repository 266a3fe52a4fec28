"""Payment use cases: record (explicit or oldest-first allocation), reverse, read, list."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

from duewise_events.catalogue import AllocationSnapshot, PaymentReceived, PaymentReversed
from duewise_service.problems import DomainError, not_found
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from invoice.models import (
    OUTBOX,
    Allocation,
    Invoice,
    Payment,
    PaymentCreate,
    PaymentReverse,
    derive_status,
    utcnow,
)
from invoice.service.common import (
    CustomerTerms,
    Page,
    check_limit,
    decode_cursor,
    lock_customer,
    page_of,
)
from invoice.service.sql import (
    arrays,
    driver_connection,
    insert_row,
    lock_customer_of,
    outbox_cte,
    outbox_params,
    sync_loaded,
    translated,
)

#: Statuses a payment may be allocated to (explicitly); auto-allocation skips disputed ones.
PAYABLE = ("open", "partially_paid", "disputed")


async def record_payment(
    *, session: AsyncSession, data: PaymentCreate, imported: bool = False
) -> Recorded:
    """Record a payment, allocate it (as given, or oldest due first) and stage PaymentReceived.

    Three statements on the session's connection (`service.sql`): lock the customer; read
    the invoices to allocate to (and whether the external id is taken); write the payment,
    the invoices' balances and statuses, the allocations and the event at once.
    `imported`: another system's history loaded by bulk import (the event says so).
    """
    conn = await driver_connection(session)
    async with translated(session):
        customer = await lock_customer_of(conn, data)
        check_payment_currency(data, customer)
        if data.allocations is None:
            rows = await conn.fetch(_OLDEST_FIRST, data.external_id, customer.id)
        else:
            ids = list(dict.fromkeys(a.invoice_id for a in data.allocations))
            rows = await conn.fetch(_EXPLICIT, data.external_id, ids)
        if data.external_id is not None and rows[0][0]:
            raise duplicate_payment(data.external_id)
        found = [OpenInvoice(*row[1:]) for row in rows if row[1] is not None]
        if data.allocations is None:
            plan = _take_oldest_first(found, data.amount)
        else:
            plan = plan_allocations(data, customer, {inv.id: inv for inv in found})
        payment = new_payment(data, customer, plan, snapshot=True)
        allocations: list[Allocation] = []
        snapshots: list[AllocationSnapshot] = []
        for position, (invoice, amount) in enumerate(plan):
            invoice.settle(amount)
            allocations.append(
                Allocation.model_construct(
                    payment_id=payment.id, invoice_id=invoice.id, amount=amount, position=position
                )
            )
            snapshots.append(allocation_snapshot(invoice, amount))
        settled = list({invoice.id: invoice for invoice, _ in plan}.values())
        now = utcnow()
        await conn.execute(
            _RECORD,
            *(getattr(payment, c) for c in _PAYMENT_COLUMNS),
            now,
            *arrays(settled, ("id", "balance", "status")),
            *arrays(allocations, ("id", "invoice_id", "amount", "position")),
            *outbox_params(received_event(payment, data, snapshots, imported=imported)),
        )
    for invoice in settled:  # an ORM copy the caller holds would be stale otherwise
        sync_loaded(
            session, Invoice, invoice.id, balance=invoice.balance, status=invoice.status,
            updated_at=now,
        )  # fmt: skip
    return Recorded(payment=payment, allocations=allocations)


@dataclass(frozen=True)
class Recorded:
    """A just-recorded payment and its allocations: read-only snapshots of the rows written
    (not in the session; load the payment to change it)."""

    payment: Payment
    allocations: list[Allocation]


@dataclass
class OpenInvoice:
    """What allocating a payment reads and changes of an invoice (its customer locked)."""

    id: str
    customer_id: str
    balance: int
    billed: int  # total less credits
    status: str
    in_dispute: bool
    voided: bool
    written_off: bool
    due_date: dt.date

    def settle(self, amount: int) -> None:
        """Take `amount` off the balance; the status follows, as `Invoice.refresh_status`."""
        self.balance -= amount
        self.status = derive_status(
            voided=self.voided,
            written_off=self.written_off,
            in_dispute=self.in_dispute,
            balance=self.balance,
            billed=self.billed,
        )


def _take_oldest_first(
    invoices: Sequence[OpenInvoice], amount: int
) -> list[tuple[OpenInvoice, int]]:
    plan: list[tuple[OpenInvoice, int]] = []
    left = amount
    for invoice in invoices:
        if left == 0:
            break
        take = min(left, invoice.balance)
        plan.append((invoice, take))
        left -= take
    return plan


_OPEN_INVOICE = (
    "i.id, i.customer_id, i.balance, i.total - i.credited_amount, i.status, i.in_dispute, "
    "i.voided_at IS NOT NULL, i.written_off_at IS NOT NULL, i.due_date"
)
# One row at least (the external id's `taken`), then one per invoice found.
_TAKEN = "(SELECT EXISTS (SELECT 1 FROM payment WHERE external_id = $1) AS taken) AS d"
_EXPLICIT = f"""
SELECT d.taken, {_OPEN_INVOICE}
  FROM {_TAKEN}
  LEFT JOIN invoice AS i ON i.id = ANY($2::text[])
"""
_OLDEST_FIRST = f"""
SELECT d.taken, {_OPEN_INVOICE}
  FROM {_TAKEN}
  LEFT JOIN invoice AS i
    ON i.customer_id = $2 AND i.status IN ('open', 'partially_paid') AND i.balance > 0
 ORDER BY i.due_date, i.issue_date, i.id
"""
_PAYMENT_COLUMNS = (
    "id", "customer_id", "amount", "currency", "method", "received_at", "reference",
    "external_id", "in_transit", "unallocated", "created_at",
)  # fmt: skip
_P = len(_PAYMENT_COLUMNS)
_RECORD = f"""
WITH pay AS (
    {insert_row("payment", _PAYMENT_COLUMNS)}
    RETURNING id
), settled AS (
    UPDATE invoice AS i SET balance = s.balance, status = s.status, updated_at = ${_P + 1}
      FROM unnest(${_P + 2}::text[], ${_P + 3}::bigint[], ${_P + 4}::text[])
           AS s(id, balance, status)
     WHERE i.id = s.id
), allocated AS (
    INSERT INTO allocation (id, payment_id, invoice_id, amount, position)
    SELECT a.id, pay.id, a.invoice_id, a.amount, a.position
      FROM pay, unnest(${_P + 5}::text[], ${_P + 6}::text[], ${_P + 7}::bigint[],
                       ${_P + 8}::int[]) AS a(id, invoice_id, amount, position)
), {outbox_cte(_P + 9, when="pay")}
SELECT count(*) FROM staged
"""


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


class Payable(Protocol):
    """What allocating reads of an invoice: an `Invoice` row or an `OpenInvoice`."""

    @property
    def id(self) -> str: ...
    @property
    def customer_id(self) -> str: ...
    @property
    def balance(self) -> int: ...
    @property
    def status(self) -> str: ...
    @property
    def due_date(self) -> dt.date: ...


P = TypeVar("P", bound=Payable)


def allocation_snapshot(invoice: Payable, amount: int) -> AllocationSnapshot:
    return AllocationSnapshot(
        invoice_id=invoice.id,
        amount=amount,
        invoice_balance=invoice.balance,
        invoice_status=invoice.status,
        due_date=invoice.due_date,
    )


def check_payment_currency(data: PaymentCreate, customer: CustomerTerms) -> None:
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
    data: PaymentCreate, customer: CustomerTerms, invoices: Mapping[str, P]
) -> list[tuple[P, int]]:
    """Check `data`'s explicit allocations against `invoices` (current, by id); the plan.

    Pure: shared by `record_payment` and the bulk path (`service.bulk`).
    """
    given = data.allocations or []
    remaining = {inv.id: inv.balance for inv in invoices.values()}
    plan: list[tuple[P, int]] = []
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
    data: PaymentCreate,
    customer: CustomerTerms,
    plan: Sequence[tuple[Payable, int]],
    *,
    snapshot: bool = False,
) -> Payment:
    """The payment row (not yet added to the session) for a checked `data` and its plan;
    `snapshot` as `service.invoices.new_invoice`."""
    allocated = sum(amount for _, amount in plan)
    make = Payment.model_construct if snapshot else Payment
    return make(
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
