"""A payment's allocations applied to the projected invoices in one statement.

After invoice.issued went to one statement (issue.py), payment.received was the costly third
of the consumer's mix: the invoice locked and loaded, updated through the ORM, its steps
cancelled, then an EXISTS for open promises and a look at the customer's stage, five or six
round trips. Here one statement updates every allocated invoice (the UPDATE locks it) and
returns it, cancels the pending steps of those now closed as `cancel_pending` does, and says
whether the customer has an open promise or a stage row, the two things that may follow.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from duewise_events.catalogue import PaymentReceived
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from dunning.models import InvoiceProjection, utcnow
from dunning.service.schedule import CLOSED, InvoiceRow

_COLUMNS = tuple(f.name for f in fields(InvoiceRow))
_CLOSED = ", ".join(f"'{s}'" for s in sorted(CLOSED))

_PAY = text(
    "WITH alloc AS ("
    " SELECT * FROM unnest(CAST(:ids AS text[]), CAST(:balances AS bigint[]),"
    " CAST(:statuses AS text[]), CAST(:amounts AS bigint[])) AS a(id, balance, status, amount)),"
    " paid AS ("
    " UPDATE invoice i SET balance = a.balance, status = a.status, updated_at = :stamp,"
    " last_payment_date = :received_at,"
    " in_transit = i.in_transit + CASE WHEN :in_transit THEN a.amount ELSE 0 END"
    " FROM alloc a WHERE i.id = a.id"
    f" RETURNING {', '.join(f'i.{c}' for c in _COLUMNS)}),"
    " cancelled AS ("
    " UPDATE scheduled_step s SET status = 'cancelled', note = 'invoice is ' || p.status,"
    " lease_until = NULL, updated_at = :stamp"
    " FROM paid p WHERE s.invoice_id = p.id AND s.status IN ('pending', 'claimed')"
    f" AND (p.status IN ({_CLOSED}) OR p.balance = 0))"
    " SELECT f.promised, f.staged, p.* FROM ("
    "  SELECT EXISTS (SELECT 1 FROM promise"
    "   WHERE customer_id = :customer_id AND status = 'open') AS promised,"
    "  EXISTS (SELECT 1 FROM customer_stage WHERE customer_id = :customer_id) AS staged"
    " ) f LEFT JOIN paid p ON true"
)


@dataclass(frozen=True)
class Allocated:
    #: the invoices paid, as now written, in the order of the allocations
    invoices: list[InvoiceRow]
    #: allocations to invoices not projected yet
    missing: list[str]
    #: whether the customer has an open promise (then `_count_towards_promises` looks)
    promised: bool
    #: whether the customer has a stage row (then `release_if_cleared` looks)
    staged: bool


async def allocate(session: AsyncSession, event: PaymentReceived) -> Allocated:
    """Apply each allocation's new balance and status (and the payment date, and the amount
    in transit), and cancel the pending steps of the invoices it closes.

    The allocations must name distinct invoices (the caller checks)."""
    allocations = event.allocations
    rows = (
        await session.execute(
            _PAY,
            {
                "ids": [a.invoice_id for a in allocations],
                "balances": [a.invoice_balance for a in allocations],
                "statuses": [a.invoice_status for a in allocations],
                "amounts": [a.amount for a in allocations],
                "stamp": utcnow(),
                "received_at": event.received_at,
                "in_transit": event.in_transit,
                "customer_id": event.customer_id,
            },
        )
    ).all()
    found: dict[str, InvoiceRow] = {}
    for row in rows:
        if row.id is None:  # the LEFT JOIN's row when no allocated invoice is projected
            continue
        found[row.id] = InvoiceRow(*(getattr(row, c) for c in _COLUMNS))
        # A copy the session may still hold is stale now: read again on its next use.
        held = session.identity_map.get(session.identity_key(InvoiceProjection, row.id))
        if held is not None:
            session.expire(held)
    ids = [a.invoice_id for a in allocations]
    return Allocated(
        invoices=[found[i] for i in ids if i in found],
        missing=[i for i in ids if i not in found],
        promised=bool(rows[0].promised),
        staged=bool(rows[0].staged),
    )


def closed(invoice: InvoiceRow) -> bool:
    """Whether `recompute()` would only cancel its pending steps (which `allocate` did)."""
    return invoice.status in CLOSED or invoice.balance == 0
