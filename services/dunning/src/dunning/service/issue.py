"""A newly issued invoice and its planned steps, written in one statement.

invoice.issued is two thirds of what the consumer applies (issue #8's mix: 200 invoices/s to
100 payments/s). Looked up, inserted through the ORM, then its steps inserted, it took three
round trips and their SQLAlchemy overhead; here one statement inserts the invoice (ON
CONFLICT DO NOTHING) and, only if it did, the rows `recompute()` would give it: a new
invoice has no rows yet, so its plan alone decides them.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import fields
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from dunning.models import CustomerProjection
from dunning.service.schedule import CLOSED, STEPS, InvoiceRow, resolve_policy, step_rows

#: The invoice's columns written (any other keeps its default).
_INVOICE_COLUMNS = tuple(f.name for f in fields(InvoiceRow))
#: The step columns written, each with the type its array of values is cast to.
_STEP_ARRAYS = {
    "invoice_id": "text[]",
    "customer_id": "text[]",
    "step_key": "text[]",
    "step_index": "integer[]",
    "send_at": "timestamptz[]",
    "local_date": "date[]",
    "status": "text[]",
    "note": "text[]",
    "policy_id": "text[]",
    "policy_version": "integer[]",
    "channel": "text[]",
    "fee_amount": "bigint[]",
    "interest_amount": "bigint[]",
    "reason": "text[]",
    "traceparent": "text[]",
    "updated_at": "timestamptz[]",
}
# A step column not written here must be one a new row leaves NULL or at its default.
assert {c.name for c in STEPS.columns} - set(_STEP_ARRAYS) == {
    "id",
    "lease_until",
    "claimed_by",
    "notice_id",
    "emitted_at",
}


def _quoted(names: Any) -> str:
    return ", ".join(f'"{n}"' for n in names)


_ISSUE = text(
    f"WITH new_invoice AS ("
    f" INSERT INTO invoice ({_quoted(_INVOICE_COLUMNS)})"
    f" VALUES ({', '.join(f':{c}' for c in _INVOICE_COLUMNS)})"
    f" ON CONFLICT (id) DO NOTHING RETURNING id),"
    f" new_steps AS ("
    f" INSERT INTO scheduled_step ({_quoted(_STEP_ARRAYS)})"
    f" SELECT * FROM unnest("
    + ", ".join(f"CAST(:s_{c} AS {t})" for c, t in _STEP_ARRAYS.items())
    + ") WHERE EXISTS (SELECT 1 FROM new_invoice) RETURNING 1)"
    " SELECT (SELECT count(*) FROM new_invoice) AS invoices,"
    " (SELECT count(*) FROM new_steps) AS steps"
)


async def insert_issued(
    session: AsyncSession,
    invoice: InvoiceRow,
    customer: CustomerProjection,
    now: dt.datetime,
) -> bool:
    """Insert `invoice` with its planned steps; False, with nothing written, when an invoice
    with its id is already there."""
    rows: list[dict[str, Any]] = []
    if invoice.status not in CLOSED and invoice.balance != 0:
        policy = await resolve_policy(session, customer, invoice.total)
        rows, _ = step_rows(invoice, customer, policy, [], now)
    params = {c: getattr(invoice, c) for c in _INVOICE_COLUMNS}
    params.update({f"s_{c}": [r[c] for r in rows] for c in _STEP_ARRAYS})
    written = (await session.execute(_ISSUE, params)).one()
    return bool(written.invoices)
