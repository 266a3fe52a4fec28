"""Invoice use cases: issue, void, write off, credit notes, reads and lists."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from duewise_events.catalogue import (
    InvoiceIssued,
    InvoiceLineSnapshot,
    InvoiceVoided,
    InvoiceWrittenOff,
)
from duewise_service.problems import DomainError, not_found
from sqlalchemy import and_, func, or_
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from invoice.models import (
    OUTBOX,
    Allocation,
    Invoice,
    InvoiceCreate,
    InvoiceLine,
    Payment,
    utcnow,
)
from invoice.service.common import CustomerTerms, lock_customer
from invoice.service.sql import (
    arrays,
    driver_connection,
    insert_row,
    lock_customer_of,
    outbox_cte,
    outbox_params,
    translated,
)


async def issue_invoice(
    *, session: AsyncSession, data: InvoiceCreate, imported: bool = False
) -> Issued:
    """Issue an invoice to a customer (locked) and stage InvoiceIssued.

    Three statements on the session's connection (`service.sql`): lock the customer; write
    the invoice, its lines and its event at once unless the number or external id is taken;
    only then, to say which, the duplicate query. `imported`: another system's history
    loaded by bulk import; the event says so, and notify does not deliver such invoices again.
    """
    conn = await driver_connection(session)
    async with translated(session):
        customer = await lock_customer_of(conn, data)
        priced = price_invoice(data, customer)
        invoice = new_invoice(data, customer, priced, snapshot=True)
        lines = new_lines(invoice, data, priced, snapshot=True)
        event = issued_event(invoice, lines, imported=imported)
        written = await conn.fetchval(
            _ISSUE,
            *(getattr(invoice, c) for c in _INVOICE_COLUMNS),
            *arrays(lines, _LINE_COLUMNS),
            *outbox_params(event),
        )
    if not written:
        await _check_unique(session, customer.id, data.number, data.external_id)
        raise DomainError(409, "Conflict", f"invoice {invoice.id} exists", code="conflict")
    return Issued(invoice=invoice, lines=lines)


@dataclass(frozen=True)
class Issued:
    """A just-issued invoice and its lines: read-only snapshots of the rows written (not in
    the session; load the invoice to change it)."""

    invoice: Invoice
    lines: list[InvoiceLine]


_INVOICE_COLUMNS = (
    "id", "customer_id", "number", "external_id", "issue_date", "due_date", "currency",
    "po_number", "gl_code", "kind", "total", "balance", "status", "in_dispute",
    "credited_amount", "written_off_amount", "created_at", "updated_at",
)  # fmt: skip
_N = len(_INVOICE_COLUMNS)
_LINE_COLUMNS = ("id", "position", "description", "quantity", "unit_price", "gl_code", "amount")
# ON CONFLICT DO NOTHING covers both unique keys (customer + number, external id): a taken
# one writes nothing, and the lines and the event hang off the invoice's RETURNING.
_ISSUE = f"""
WITH inv AS (
    {insert_row("invoice", _INVOICE_COLUMNS)}
    ON CONFLICT DO NOTHING
    RETURNING id
), lines AS (
    INSERT INTO invoice_line
        (id, invoice_id, position, description, quantity, unit_price, gl_code, amount)
    SELECT ln.id, inv.id, ln.position, ln.description, ln.quantity, ln.unit_price, ln.gl_code,
           ln.amount
      FROM inv, unnest(${_N + 1}::text[], ${_N + 2}::int[], ${_N + 3}::text[],
                       ${_N + 4}::bigint[], ${_N + 5}::bigint[], ${_N + 6}::text[],
                       ${_N + 7}::bigint[])
                AS ln(id, position, description, quantity, unit_price, gl_code, amount)
), {outbox_cte(_N + 8, when="inv")}
SELECT count(*) FROM staged
"""


@dataclass(frozen=True)
class Priced:
    """What `price_invoice` worked out for an invoice: line amounts, total, due date, GL code."""

    amounts: list[int]
    total: int
    due_date: dt.date
    gl_code: str | None


def price_invoice(data: InvoiceCreate, customer: CustomerTerms) -> Priced:
    """Check `data` against its (locked) customer and work out its amounts; DomainError if not.

    Shared by `issue_invoice` and the bulk path (`service.bulk`); touches no database.
    """
    both = data.customer_id is not None and data.customer_external_id is not None
    if both and customer.external_id != data.customer_external_id:
        raise DomainError(
            422,
            "Customer mismatch",
            "customer_external_id: does not belong to the customer named by customer_id",
            "customer_external_id",
        )
    if data.currency != customer.currency:
        raise DomainError(
            422,
            "Currency mismatch",
            f"currency: the invoice is in {data.currency} but customer {customer.id} is billed "
            f"in {customer.currency}",
            "currency",
        )
    prefs = customer.invoice_preferences
    if prefs.get("po_required") and not data.po_number:
        raise DomainError(
            422,
            "PO number required",
            f"po_number: customer {customer.id} requires a purchase order number on every invoice",
            "po_number",
        )
    amounts = [line.quantity * line.unit_price for line in data.lines]
    total = sum(amounts) if data.lines else (data.total or 0)
    if data.lines and data.total is not None and data.total != total:
        raise DomainError(
            422,
            "Total does not match lines",
            f"total: {data.total} is not the sum of the lines ({total})",
            "total",
        )
    due = data.due_date or data.issue_date + dt.timedelta(days=customer.payment_terms_days)
    return Priced(
        amounts=amounts,
        total=total,
        due_date=due,
        gl_code=data.gl_code or prefs.get("customer_gl_code"),
    )


def new_invoice(
    data: InvoiceCreate, customer: CustomerTerms, priced: Priced, *, snapshot: bool = False
) -> Invoice:
    """The invoice row (not yet added to the session) for a checked `data`.

    `snapshot`: a read-only row for a path that writes it with its own SQL (`model_construct`:
    without the ORM state a table model's __init__ sets up, ~0.1 ms a row; setting an
    attribute on it raises).
    """
    make = Invoice.model_construct if snapshot else Invoice
    return make(
        customer_id=customer.id,
        number=data.number,
        external_id=data.external_id,
        issue_date=data.issue_date,
        due_date=priced.due_date,
        currency=data.currency,
        po_number=data.po_number,
        gl_code=priced.gl_code,
        kind=data.kind,
        total=priced.total,
        balance=priced.total,
        status="paid" if priced.total == 0 else "open",
    )


def new_lines(
    invoice: Invoice, data: InvoiceCreate, priced: Priced, *, snapshot: bool = False
) -> list[InvoiceLine]:
    """The line rows of `invoice` (not yet added to the session); `snapshot` as `new_invoice`."""
    make = InvoiceLine.model_construct if snapshot else InvoiceLine
    return [
        make(invoice_id=invoice.id, position=i, amount=amount, **line.model_dump())
        for i, (line, amount) in enumerate(zip(data.lines, priced.amounts, strict=True))
    ]


def issued_event(
    invoice: Invoice, lines: Sequence[InvoiceLine], *, imported: bool = False
) -> InvoiceIssued:
    """The InvoiceIssued event of a just-issued invoice."""
    return InvoiceIssued(
        customer_id=invoice.customer_id,
        invoice_id=invoice.id,
        number=invoice.number,
        external_id=invoice.external_id,
        issue_date=invoice.issue_date,
        due_date=invoice.due_date,
        currency=invoice.currency,
        total=invoice.total,
        balance=invoice.balance,
        po_number=invoice.po_number,
        gl_code=invoice.gl_code,
        kind=invoice.kind,
        imported=imported,
        lines=[
            InvoiceLineSnapshot(
                description=ln.description,
                quantity=ln.quantity,
                unit_price=ln.unit_price,
                amount=ln.amount,
                gl_code=ln.gl_code,
            )
            for ln in lines
        ],
    )


async def void_invoice(
    *, session: AsyncSession, invoice_id: str, reason: str = "voided"
) -> Invoice:
    """Void an invoice that has no payment allocated to it; stage InvoiceVoided."""
    invoice = await lock_invoice(session, invoice_id)
    refuse_closed(invoice, "void")
    if await _paid_amount(session, invoice.id):
        raise DomainError(
            409,
            "Invoice has payments",
            f"invoice {invoice.id} has payments allocated to it; reverse them or issue a "
            "credit note instead of voiding",
            code="invoice-has-payments",
        )
    now = utcnow()
    invoice.voided_at = now
    invoice.void_reason = reason
    invoice.balance = 0
    touch(invoice, session)
    await OUTBOX.add(
        session,
        InvoiceVoided(
            customer_id=invoice.customer_id, invoice_id=invoice.id, reason=reason, voided_at=now
        ),
    )
    return invoice


async def write_off_invoice(
    *, session: AsyncSession, invoice_id: str, reason: str = "uncollectable"
) -> Invoice:
    """Write off an invoice's remaining balance; stage InvoiceWrittenOff."""
    invoice = await lock_invoice(session, invoice_id)
    refuse_closed(invoice, "write off")
    if invoice.balance == 0:
        raise DomainError(
            409,
            "Nothing to write off",
            f"invoice {invoice.id} has no balance left",
            code="nothing-to-write-off",
        )
    now = utcnow()
    amount = invoice.balance
    invoice.written_off_amount = amount
    invoice.written_off_at = now
    invoice.write_off_reason = reason
    invoice.balance = 0
    touch(invoice, session)
    await OUTBOX.add(
        session,
        InvoiceWrittenOff(
            customer_id=invoice.customer_id,
            invoice_id=invoice.id,
            amount=amount,
            currency=invoice.currency,
            reason=reason,
            written_off_at=now,
        ),
    )
    return invoice


async def lock_invoice(session: AsyncSession, invoice_id: str) -> Invoice:
    """The invoice, after locking its customer's row (the per-customer write order)."""
    customer_id = await session.scalar(
        select(Invoice.customer_id).where(col(Invoice.id) == invoice_id)
    )
    if customer_id is None:
        raise not_found("invoice", invoice_id)
    await lock_customer(session, customer_id=customer_id)
    stmt = (
        select(Invoice)
        .where(col(Invoice.id) == invoice_id)
        .execution_options(populate_existing=True)
    )
    invoice: Invoice = (await session.execute(stmt)).scalar_one()
    return invoice


async def _paid_amount(session: AsyncSession, invoice_id: str) -> int:
    """What unreversed payments have allocated to the invoice."""
    stmt = (
        select(func.coalesce(func.sum(Allocation.amount), 0))
        .join(Payment, col(Payment.id) == col(Allocation.payment_id))
        .where(col(Allocation.invoice_id) == invoice_id, col(Payment.reversed_at).is_(None))
    )
    return int(await session.scalar(stmt) or 0)


def refuse_closed(invoice: Invoice, action: str) -> None:
    if invoice.status in ("void", "written_off"):
        raise DomainError(
            409,
            "Invoice closed",
            f"cannot {action} invoice {invoice.id}: it is {invoice.status}",
            code="invoice-closed",
        )


def touch(invoice: Invoice, session: AsyncSession) -> None:
    invoice.refresh_status()
    invoice.updated_at = utcnow()
    session.add(invoice)


async def _check_unique(
    session: AsyncSession, customer_id: str, number: str, external_id: str | None
) -> None:
    cond = and_(col(Invoice.customer_id) == customer_id, col(Invoice.number) == number)
    if external_id is not None:
        cond = or_(cond, col(Invoice.external_id) == external_id)
    stmt = select(Invoice.customer_id, Invoice.number, Invoice.external_id).where(cond).limit(2)
    for row in (await session.execute(stmt)).all():
        if row.customer_id == customer_id and row.number == number:
            raise duplicate_number(customer_id, number)
        raise duplicate_external_id(external_id)


def duplicate_number(customer_id: str, number: str) -> DomainError:
    return DomainError(
        409,
        "Duplicate invoice number",
        f"number: customer {customer_id} already has an invoice {number!r}",
        "number",
    )


def duplicate_external_id(external_id: str | None) -> DomainError:
    return DomainError(
        409,
        "Duplicate external id",
        f"external_id: an invoice with external_id {external_id!r} already exists",
        "external_id",
    )
