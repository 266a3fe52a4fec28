"""Import parsed rows through the service's own use cases, in batches.

Units of work
    Rows are taken `batch_size` (500) at a time; each batch is one transaction.
    Customers and payments: each row inside it is one savepoint (`session.begin_nested()`), so
    a row the domain refuses rolls back alone and leaves nothing half-written, while the good
    rows of the batch commit together. Rows are written by `create_customer`,
    `update_customer` and `record_payment`, so they stage exactly the events the HTTP API
    stages, in the same outbox, and the relay publishes them.
    Invoices go set-wise (`service.bulk.issue_invoices` and `record_opening_payments`): the
    same checks and the same rows and events as `issue_invoice` / `record_payment`, but a
    handful of statements per batch instead of ~10 round trips per row; a row the domain
    refuses is left out and reported. If the database refuses the batch (a constraint raced
    by a concurrent writer, a deadlock) or an opening payment is refused after its invoice,
    the batch is rolled back and done again row by row, with savepoints, as above. In a set-
    wise batch the invoice.issued.v1 events come first, then the batch's payment.received.v1
    (each customer's still in order: an invoice's issue before its opening payment).
    A batch holds its customers' row locks until it commits.

Idempotency (re-running a file creates nothing new)
    customers  matched by `external_id`. A match whose file-given fields are unchanged is
               *skipped*; one whose file-given fields differ is *updated* (`update_customer`,
               one customer.updated.v1). Only fields that came from a file column are compared:
               defaults, constants and lookup fallbacks (`"*"`) never overwrite what was changed
               in duewise. A contact (by email, else phone) the customer lacks is added; the
               customer's other contacts are kept.
    invoices   matched by `external_id`, or by (customer, number): a match is *skipped*, never
               changed (balances move through payments, not re-imports).
    payments   matched by `external_id` (the payment table has one); a row without one is
               matched on (customer, reference, amount, received_at).
    The same key twice in one file: the second row is rejected as a duplicate of the first.

Open invoices whose balance is below their amount
    An ERP's open-invoice export carries the original amount and the current balance. The
    invoice is issued at its ORIGINAL amount, and the already-paid difference is recorded in
    the same transaction as one "opening balance" payment (method `other`, reference
    `Opening balance <number> (imported)`, external id `opening:<invoice external id>`),
    allocated to that invoice; its date is the row's `balance_as_of` or the import date. So
    `total`, `balance` and status (`partially_paid`) are all true, and aging is right; the
    events are invoice.issued.v1 then payment.received.v1. Only import cash receipts dated
    after the open-invoice snapshot, or they would pay the same amount twice.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Iterator, Sequence
from itertools import islice
from typing import Any, TypeVar

from duewise_service.problems import DomainError
from pydantic import BaseModel, Field, ValidationError
from sqlalchemy import tuple_
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from invoice.imports.mapping import Kind, Mapping
from invoice.imports.parse import (
    FIRST_DATA_ROW,
    ParsedCustomer,
    ParsedInvoice,
    ParsedPayment,
    Row,
    RowError,
    RowParser,
)
from invoice.models import (
    AllocationCreate,
    Contact,
    ContactCreate,
    Customer,
    CustomerUpdate,
    Invoice,
    Payment,
    PaymentCreate,
    utcnow,
)
from invoice.service import create_customer, issue_invoice, record_payment, update_customer
from invoice.service.bulk import (
    existing_invoice_keys,
    issue_invoices,
    record_opening_payments,
)

BATCH_SIZE = 500
T = TypeVar("T")
#: Customer fields an import may change on a re-run (contacts and preferences handled apart).
_UPDATABLE = (
    "name",
    "currency",
    "timezone",
    "country",
    "locale",
    "payment_terms_days",
    "credit_limit",
    "tags",
)


class RejectedRow(BaseModel):
    """A row that was not imported: where (row number, source column) and why."""

    row: int
    column: str | None
    reason: str
    values: dict[str, str] = Field(default_factory=dict, description="the row as read")


class ImportReport(BaseModel):
    """What an import did: counts per outcome and every rejected row."""

    kind: Kind
    mapping: str
    rows: int = 0
    created: int = 0
    updated: int = 0
    skipped: int = 0
    rejected: int = 0
    rejected_rows: list[RejectedRow] = Field(default_factory=list)

    def reject(self, row: int, column: str | None, reason: str, values: dict[str, str]) -> None:
        self.rejected += 1
        self.rejected_rows.append(
            RejectedRow(row=row, column=column, reason=reason, values=dict(values))
        )


class _Batch:
    """The outcomes of one batch, added to the report only once the batch has committed."""

    def __init__(self) -> None:
        self.created = 0
        self.updated = 0
        self.skipped = 0
        self.rejected: list[tuple[int, str | None, str, dict[str, str]]] = []

    def reject(self, row: Row, column: str | None, reason: str) -> None:
        self.rejected.append((row.number, column, reason, row.raw))

    def into_batch(self, other: _Batch) -> None:
        other.created += self.created
        other.updated += self.updated
        other.skipped += self.skipped
        other.rejected.extend(self.rejected)

    def into(self, report: ImportReport) -> None:
        report.created += self.created
        report.updated += self.updated
        report.skipped += self.skipped
        for r in self.rejected:
            report.reject(*r)


async def import_rows(
    *,
    session_factory: Callable[[], AsyncSession],
    kind: Kind,
    rows: Iterable[dict[str, str]],
    mapping: Mapping,
    progress: Callable[[int], None] | None = None,
    batch_size: int = BATCH_SIZE,
    today: dt.date | None = None,
) -> ImportReport:
    """Import `rows` (CSV rows as dicts) of `kind` through `mapping`; returns the report.

    Raises `parse.FileError` (before writing anything) when the first row shows that a
    required column is missing; every other problem is a rejected row in the report.
    """
    parser = RowParser(mapping, kind)
    report = ImportReport(kind=kind, mapping=mapping.name)
    importer = _Importer(parser, kind, today or utcnow().date())
    numbered = enumerate(rows, start=FIRST_DATA_ROW)
    first = True
    for chunk in _chunks(numbered, batch_size):
        if first:
            parser.check_header(list(chunk[0][1]))
            first = False
        batch = _Batch()
        parsed: list[Any] = []
        for number, raw in chunk:
            try:
                p = parser.parse(number, raw)
            except RowError as exc:
                batch.rejected.append((exc.row, exc.column, exc.reason, raw))
                continue
            dup = importer.seen(p)
            if dup is not None:
                batch.reject(p.row, *dup)
                continue
            parsed.append(p)
        if parsed and kind == "invoices":
            await importer.invoices_batch(session_factory, parsed, batch)
        elif parsed:
            async with session_factory() as session, session.begin():
                await importer.run(session, parsed, batch)
        batch.into(report)
        report.rows += len(chunk)
        if progress is not None:
            progress(len(chunk))
    report.rejected_rows.sort(key=lambda r: r.row)
    return report


class _RowByRow(Exception):
    """The set-wise path gave up on a batch: roll it back and do it row by row."""


def _chunks(items: Iterator[T], size: int) -> Iterator[list[T]]:
    while chunk := list(islice(items, size)):
        yield chunk


class _Importer:
    """Per-kind batch logic: one look-up query per batch, then the writes (set-wise for
    invoices, a savepoint per new row otherwise)."""

    def __init__(self, parser: RowParser, kind: Kind, today: dt.date) -> None:
        self.parser = parser
        self.kind = kind
        self.today = today
        self.keys: dict[tuple[str, ...], int] = {}

    def seen(self, p: Any) -> tuple[str | None, str] | None:
        """(column, reason) when an earlier row of this file has the same identity."""
        keys: list[tuple[tuple[str, ...], str]] = []
        if isinstance(p, ParsedCustomer):
            keys.append((("c", str(p.data.external_id)), "external_id"))
        elif isinstance(p, ParsedInvoice):
            if p.data.external_id:
                keys.append((("i", p.data.external_id), "external_id"))
            keys.append(
                (("in", str(p.data.customer_external_id), p.data.number), "number"),
            )
        elif isinstance(p, ParsedPayment) and p.data.external_id:
            keys.append((("p", p.data.external_id), "external_id"))
        for key, name in keys:
            if key in self.keys:
                return (
                    p.row.columns.get(name),
                    f"duplicate: row {self.keys[key]} has the same {name} {key[-1]!r}",
                )
        for key, _ in keys:
            self.keys[key] = p.row.number
        return None

    async def run(self, session: AsyncSession, parsed: list[Any], batch: _Batch) -> None:
        if self.kind == "customers":
            await self._customers(session, parsed, batch)
        elif self.kind == "invoices":
            await self._invoices(session, parsed, batch)
        else:
            await self._payments(session, parsed, batch)

    async def _guarded(
        self, session: AsyncSession, row: Row, write: Callable[[], Any], batch: _Batch
    ) -> bool:
        """Run `write` in a savepoint; a refusal becomes a rejected row. True if it landed."""
        try:
            async with session.begin_nested():
                await write()
        except DomainError as exc:
            batch.reject(row, self.parser.column_for(row, exc.field), exc.detail)
            return False
        except ValidationError as exc:
            err = exc.errors()[0]
            loc = "/".join(str(p) for p in err.get("loc", ()))
            batch.reject(row, self.parser.column_for(row, loc or None), str(err.get("msg")))
            return False
        except IntegrityError as exc:
            constraint = getattr(getattr(exc.orig, "__cause__", None), "constraint_name", None)
            batch.reject(
                row, None, f"conflicts with existing data ({constraint or 'unique constraint'})"
            )
            return False
        return True

    # -- customers ----------------------------------------------------------------------------

    async def _customers(
        self, session: AsyncSession, parsed: Sequence[ParsedCustomer], batch: _Batch
    ) -> None:
        ids = [str(p.data.external_id) for p in parsed]
        found = (
            (await session.execute(select(Customer).where(col(Customer.external_id).in_(ids))))
            .scalars()
            .all()
        )
        existing = {str(c.external_id): c for c in found}
        contacts: dict[str, list[Contact]] = {c.id: [] for c in found}
        if found:
            stmt = (
                select(Contact)
                .where(col(Contact.customer_id).in_(list(contacts)))
                .order_by(col(Contact.customer_id), col(Contact.position))
            )
            for contact in (await session.execute(stmt)).scalars():
                contacts[contact.customer_id].append(contact)
        for p in parsed:
            current = existing.get(str(p.data.external_id))
            if current is None:
                data = p.data

                async def create(data: Any = data) -> None:
                    await create_customer(session=session, data=data)

                if await self._guarded(session, p.row, create, batch):
                    batch.created += 1
                continue
            change = _customer_changes(current, contacts[current.id], p)
            if change is None:
                batch.skipped += 1
                continue

            async def update(customer_id: str = current.id, change: Any = change) -> None:
                await update_customer(session=session, customer_id=customer_id, data=change)

            if await self._guarded(session, p.row, update, batch):
                batch.updated += 1

    # -- invoices -----------------------------------------------------------------------------

    async def invoices_batch(
        self,
        session_factory: Callable[[], AsyncSession],
        parsed: Sequence[ParsedInvoice],
        batch: _Batch,
    ) -> None:
        """One batch of invoices, set-wise in one transaction; row by row if that fails.

        The set-wise path refuses rows exactly as the row-by-row one does. Anything else —
        an error from the database (a constraint raced by a concurrent writer, a deadlock),
        an opening payment refused after its invoice went in — rolls the whole batch back
        and the batch is done again with one savepoint per row, so one bad row never sinks
        the others.
        """
        outcome = _Batch()
        try:
            async with session_factory() as session, session.begin():
                await self._invoices_bulk(session, parsed, outcome)
        except (SQLAlchemyError, _RowByRow):
            outcome = _Batch()
            async with session_factory() as session, session.begin():
                await self._invoices(session, parsed, outcome)
        outcome.into_batch(batch)

    async def _invoices_bulk(
        self, session: AsyncSession, parsed: Sequence[ParsedInvoice], batch: _Batch
    ) -> None:
        todo = await self._invoices_to_issue(session, parsed, batch)
        items = [
            p.data.model_copy(update={"customer_id": customer_id, "customer_external_id": None})
            for p, customer_id in todo
        ]
        issued: list[tuple[ParsedInvoice, Invoice]] = []
        for (p, _), result in zip(
            todo, await issue_invoices(session=session, items=items, imported=True), strict=True
        ):
            if isinstance(result, DomainError):
                batch.reject(p.row, self.parser.column_for(p.row, result.field), result.detail)
            else:
                issued.append((p, result))
        openings: list[PaymentCreate] = []
        for p, invoice in issued:
            paid = invoice.total - p.balance
            if paid > 0:
                try:
                    openings.append(self._opening_payment(invoice, paid, p))
                except ValidationError as exc:
                    raise _RowByRow from exc
        if openings:
            paid_results = await record_opening_payments(
                session=session,
                items=openings,
                invoices={invoice.id: invoice for _, invoice in issued},
            )
            if any(isinstance(r, DomainError) for r in paid_results):
                raise _RowByRow
        batch.created += len(issued)

    async def _invoices(
        self, session: AsyncSession, parsed: Sequence[ParsedInvoice], batch: _Batch
    ) -> None:
        for p, customer_id in await self._invoices_to_issue(session, parsed, batch):

            async def issue(p: ParsedInvoice = p, customer_id: str = customer_id) -> None:
                data = p.data.model_copy(
                    update={"customer_id": customer_id, "customer_external_id": None}
                )
                issued = await issue_invoice(session=session, data=data, imported=True)
                invoice = issued.invoice
                paid = invoice.total - p.balance
                if paid > 0:
                    await record_payment(
                        session=session,
                        data=self._opening_payment(invoice, paid, p),
                        imported=True,
                    )

            if await self._guarded(session, p.row, issue, batch):
                batch.created += 1

    async def _invoices_to_issue(
        self, session: AsyncSession, parsed: Sequence[ParsedInvoice], batch: _Batch
    ) -> list[tuple[ParsedInvoice, str]]:
        """The rows to issue, with their customer ids; rejects unknown customers, skips matches."""
        todo: list[tuple[ParsedInvoice, str]] = []
        customers = await _customer_ids(session, [str(p.data.customer_external_id) for p in parsed])
        pairs = [
            (customers[str(p.data.customer_external_id)], p.data.number)
            for p in parsed
            if str(p.data.customer_external_id) in customers
        ]
        ext_ids = [p.data.external_id for p in parsed if p.data.external_id]
        have_pairs, have_ext = await existing_invoice_keys(
            session, pairs=pairs, external_ids=ext_ids
        )
        for p in parsed:
            customer_id = customers.get(str(p.data.customer_external_id))
            if customer_id is None:
                batch.reject(
                    p.row,
                    p.row.columns.get("customer_external_id"),
                    f"unknown customer {p.data.customer_external_id!r} (import customers first)",
                )
                continue
            if (customer_id, p.data.number) in have_pairs or (
                p.data.external_id and p.data.external_id in have_ext
            ):
                batch.skipped += 1
                continue
            todo.append((p, customer_id))
        return todo

    def _opening_payment(self, invoice: Invoice, paid: int, p: ParsedInvoice) -> PaymentCreate:
        key = invoice.external_id or f"{invoice.customer_id}:{invoice.number}"
        return PaymentCreate(
            customer_id=invoice.customer_id,
            amount=paid,
            currency=invoice.currency,
            method="other",
            received_at=p.balance_as_of or self.today,
            reference=f"Opening balance {invoice.number} (imported)"[:200],
            external_id=f"opening:{key}"[:100],
            allocations=[AllocationCreate(invoice_id=invoice.id, amount=paid)],
        )

    # -- payments -----------------------------------------------------------------------------

    async def _payments(
        self, session: AsyncSession, parsed: Sequence[ParsedPayment], batch: _Batch
    ) -> None:
        customers = await _customer_ids(session, [str(p.data.customer_external_id) for p in parsed])
        known = [p for p in parsed if str(p.data.customer_external_id) in customers]
        ext_ids = [p.data.external_id for p in known if p.data.external_id]
        have_ext: set[str] = set()
        if ext_ids:
            stmt = select(Payment.external_id).where(col(Payment.external_id).in_(ext_ids))
            have_ext = {str(e) for e in (await session.scalars(stmt)).all()}
        have_same: set[tuple[Any, ...]] = set()
        loose = [p for p in known if not p.data.external_id]
        if loose:
            stmt2 = select(
                col(Payment.customer_id),
                col(Payment.reference),
                col(Payment.amount),
                col(Payment.received_at),
            ).where(
                col(Payment.customer_id).in_(
                    {customers[str(p.data.customer_external_id)] for p in loose}
                )
            )
            have_same = {tuple(r) for r in (await session.execute(stmt2)).all()}
        wanted = {
            (customers[str(p.data.customer_external_id)], p.invoice_number)
            for p in known
            if p.invoice_number
        }
        invoices: dict[tuple[str, str], str] = {}
        if wanted:
            stmt3 = select(Invoice.id, Invoice.customer_id, Invoice.number).where(
                tuple_(col(Invoice.customer_id), col(Invoice.number)).in_(list(wanted))
            )
            invoices = {(r.customer_id, r.number): r.id for r in (await session.execute(stmt3))}
        for p in parsed:
            customer_id = customers.get(str(p.data.customer_external_id))
            if customer_id is None:
                batch.reject(
                    p.row,
                    p.row.columns.get("customer_external_id"),
                    f"unknown customer {p.data.customer_external_id!r} (import customers first)",
                )
                continue
            same = (customer_id, p.data.reference, p.data.amount, p.data.received_at)
            if (p.data.external_id and p.data.external_id in have_ext) or (
                not p.data.external_id and same in have_same
            ):
                batch.skipped += 1
                continue
            allocations: list[AllocationCreate] | None
            if p.invoice_number:
                invoice_id = invoices.get((customer_id, p.invoice_number))
                if invoice_id is None:
                    batch.reject(
                        p.row,
                        p.row.columns.get("invoice_number"),
                        f"unknown invoice {p.invoice_number!r} of customer "
                        f"{p.data.customer_external_id!r}",
                    )
                    continue
                allocations = [AllocationCreate(invoice_id=invoice_id, amount=p.data.amount)]
            else:
                allocations = None if self.parser.km.auto_allocate else []
            data = p.data.model_copy(
                update={
                    "customer_id": customer_id,
                    "customer_external_id": None,
                    "allocations": allocations,
                }
            )

            async def record(data: PaymentCreate = data) -> None:
                await record_payment(session=session, data=data, imported=True)

            if await self._guarded(session, p.row, record, batch):
                batch.created += 1
                if not p.data.external_id:
                    have_same.add(same)


async def _customer_ids(session: AsyncSession, external_ids: Sequence[str]) -> dict[str, str]:
    """external id → customer id, for the ones that exist."""
    stmt = select(Customer.external_id, Customer.id).where(
        col(Customer.external_id).in_(set(external_ids))
    )
    return {str(r.external_id): r.id for r in (await session.execute(stmt)).all()}


def _customer_changes(
    customer: Customer, contacts: Sequence[Contact], p: ParsedCustomer
) -> CustomerUpdate | None:
    """The update that brings `customer` in line with the file's own fields; None if it is."""
    data, given = p.data, p.row.from_file
    changes: dict[str, Any] = {
        name: getattr(data, name)
        for name in _UPDATABLE
        if name in given and getattr(data, name) != getattr(customer, name)
    }
    prefs = dict(customer.invoice_preferences)
    new_prefs = data.invoice_preferences.model_dump(mode="json")
    for name in ("po_required", "customer_gl_code"):
        if name in given and prefs.get(name) != new_prefs.get(name):
            prefs[name] = new_prefs.get(name)
            changes["invoice_preferences"] = prefs
    if data.contacts and not any(_same_contact(c, data.contacts[0]) for c in contacts):
        kept = [
            ContactCreate(
                name=c.name,
                email=c.email,
                phone=c.phone,
                role=c.role,
                undeliverable=c.undeliverable,
            )
            for c in contacts
        ]
        changes["contacts"] = [*kept, data.contacts[0]]
    if not changes:
        return None
    return CustomerUpdate.model_validate(changes)


def _same_contact(have: Contact, new: ContactCreate) -> bool:
    if new.email is not None:
        return (have.email or "").lower() == new.email.lower()
    return have.phone == new.phone
