"""Invoice reads: one invoice, the lines of several, filtered keyset-paginated lists."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from duewise_service.problems import DomainError, not_found
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from invoice.models import Invoice, InvoiceLine
from invoice.service.common import MAX_LIMIT, Page, check_limit, decode_cursor, page_of


async def get_invoice(*, session: AsyncSession, invoice_id: str) -> Invoice:
    """The invoice, or a 404."""
    invoice = await session.get(Invoice, invoice_id)
    if invoice is None:
        raise not_found("invoice", invoice_id)
    return invoice


async def invoice_lines(
    session: AsyncSession, invoice_ids: Sequence[str]
) -> dict[str, list[InvoiceLine]]:
    """The lines of each invoice, in order."""
    out: dict[str, list[InvoiceLine]] = {i: [] for i in invoice_ids}
    if not invoice_ids:
        return out
    stmt = (
        select(InvoiceLine)
        .where(col(InvoiceLine.invoice_id).in_(invoice_ids))
        .order_by(col(InvoiceLine.invoice_id), col(InvoiceLine.position))
    )
    for line in (await session.execute(stmt)).scalars():
        out[line.invoice_id].append(line)
    return out


async def list_invoices(
    *,
    session: AsyncSession,
    limit: int = 50,
    cursor: str | None = None,
    customer_id: str | None = None,
    status: str | None = None,
    due_before: dt.date | None = None,
    due_after: dt.date | None = None,
    external_id: str | None = None,
    ids: Sequence[str] | None = None,
) -> Page[Invoice]:
    """Invoices oldest first, filtered, keyset-paginated by id.

    `ids` asks for those invoices only (1..MAX_LIMIT of them; the other filters still
    apply), all in one page: unknown ids are simply absent, and there is no next cursor.
    """
    if ids is not None:
        wanted = _wanted(ids, cursor)
        stmt = select(Invoice).where(col(Invoice.id).in_(wanted)).order_by(col(Invoice.id))
        # `limit` does not cut an id list: the caller asked for each of them.
        limit = len(wanted)
    else:
        check_limit(limit)
        stmt = select(Invoice).order_by(col(Invoice.id)).limit(limit + 1)
    after = decode_cursor(cursor)
    if after:
        stmt = stmt.where(col(Invoice.id) > after)
    if customer_id is not None:
        stmt = stmt.where(col(Invoice.customer_id) == customer_id)
    if status is not None:
        stmt = stmt.where(col(Invoice.status).in_(status.split(",")))
    if due_before is not None:
        stmt = stmt.where(col(Invoice.due_date) < due_before)
    if due_after is not None:
        stmt = stmt.where(col(Invoice.due_date) > due_after)
    if external_id is not None:
        stmt = stmt.where(col(Invoice.external_id) == external_id)
    rows = (await session.execute(stmt)).scalars().all()
    return page_of(rows, limit, lambda i: i.id)


def _wanted(ids: Sequence[str], cursor: str | None) -> list[str]:
    """The distinct ids of an id list; 422 for none, more than MAX_LIMIT, or with a cursor."""
    wanted = list(dict.fromkeys(ids))
    if not 1 <= len(wanted) <= MAX_LIMIT:
        raise DomainError(
            422, "Invalid id list", f"id: give 1..{MAX_LIMIT} ids, got {len(wanted)}", "id"
        )
    if cursor:
        raise DomainError(
            422, "Invalid cursor", "cursor: an id list is answered in one page", "cursor"
        )
    return wanted
