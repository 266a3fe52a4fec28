"""Read models: a customer's balance and the AR aging report (per currency, never summed across)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from duewise_service.problems import not_found
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

BUCKETS = ("current", "1-30", "31-60", "61-90", "90+")

# "Today" is the customer's local date in its IANA time zone unless `as_of` is given.
_AGING_SQL = """
WITH aged AS (
    SELECT i.currency, i.balance,
           (COALESCE(CAST(:as_of AS date), (now() AT TIME ZONE c.timezone)::date) - i.due_date)
               AS days_past_due
    FROM invoice i JOIN customer c ON c.id = i.customer_id
    WHERE i.status IN ('open', 'partially_paid', 'disputed') AND i.balance > 0
      AND (CAST(:customer_id AS text) IS NULL OR i.customer_id = :customer_id)
)
SELECT currency,
       CASE WHEN days_past_due <= 0 THEN 'current'
            WHEN days_past_due <= 30 THEN '1-30'
            WHEN days_past_due <= 60 THEN '31-60'
            WHEN days_past_due <= 90 THEN '61-90'
            ELSE '90+' END AS bucket,
       SUM(balance) AS amount, COUNT(*) AS invoices
FROM aged GROUP BY 1, 2 ORDER BY 1, 2
"""

_CREDIT_SQL = """
SELECT currency, SUM(unallocated) AS credit FROM payment
WHERE reversed_at IS NULL AND unallocated > 0
  AND (CAST(:customer_id AS text) IS NULL OR customer_id = :customer_id)
GROUP BY currency ORDER BY currency
"""


async def aging_report(
    *, session: AsyncSession, as_of: dt.date | None = None, customer_id: str | None = None
) -> dict[str, Any]:
    """Open balances by days past due (current, 1-30, 31-60, 61-90, 90+), one total per currency."""
    if customer_id is not None:
        await _require_customer(session, customer_id)
    params = {"as_of": as_of, "customer_id": customer_id}
    totals: dict[str, dict[str, Any]] = {}
    for row in (await session.execute(text(_AGING_SQL), params)).mappings():
        t = totals.setdefault(row["currency"], _empty(row["currency"]))
        t["buckets"][row["bucket"]] = int(row["amount"])
        t["invoice_counts"][row["bucket"]] = int(row["invoices"])
        t["total"] += int(row["amount"])
    for row in (await session.execute(text(_CREDIT_SQL), params)).mappings():
        totals.setdefault(row["currency"], _empty(row["currency"]))["unapplied_credit"] = int(
            row["credit"]
        )
    return {
        "as_of": as_of.isoformat() if as_of else None,
        "as_of_rule": "given date" if as_of else "today in each customer's time zone",
        "customer_id": customer_id,
        "buckets": list(BUCKETS),
        "totals": [totals[c] for c in sorted(totals)],
    }


_BALANCE_SQL = """
SELECT status, currency, COUNT(*) AS invoices, SUM(total) AS total, SUM(balance) AS balance,
       SUM(CASE WHEN due_date < COALESCE(CAST(:as_of AS date), (now() AT TIME ZONE :tz)::date)
                THEN balance ELSE 0 END) AS overdue
FROM invoice WHERE customer_id = :customer_id GROUP BY 1, 2 ORDER BY 1, 2
"""


async def customer_balance(
    *, session: AsyncSession, customer_id: str, as_of: dt.date | None = None
) -> dict[str, Any]:
    """What the customer owes (open, overdue), its unapplied credit, and invoices by status."""
    customer = await _require_customer(session, customer_id)
    params = {"as_of": as_of, "tz": customer["timezone"], "customer_id": customer_id}
    by_status: dict[str, dict[str, int]] = {}
    open_, overdue = 0, 0
    for row in (await session.execute(text(_BALANCE_SQL), params)).mappings():
        by_status[row["status"]] = {
            "invoices": int(row["invoices"]),
            "total": int(row["total"]),
            "balance": int(row["balance"]),
        }
        if row["status"] in ("open", "partially_paid", "disputed"):
            open_ += int(row["balance"])
            overdue += int(row["overdue"])
    credit = 0
    for row in (await session.execute(text(_CREDIT_SQL), params)).mappings():
        credit += int(row["credit"])
    return {
        "customer_id": customer_id,
        "currency": customer["currency"],
        "as_of": (as_of or _local_today(customer["timezone"])).isoformat(),
        "open": open_,
        "overdue": overdue,
        "credit": credit,
        "net": open_ - credit,
        "by_status": by_status,
    }


def _empty(currency: str) -> dict[str, Any]:
    return {
        "currency": currency,
        "buckets": dict.fromkeys(BUCKETS, 0),
        "invoice_counts": dict.fromkeys(BUCKETS, 0),
        "total": 0,
        "unapplied_credit": 0,
    }


def _local_today(tz: str) -> dt.date:
    from zoneinfo import ZoneInfo

    return dt.datetime.now(ZoneInfo(tz)).date()


async def _require_customer(session: AsyncSession, customer_id: str) -> dict[str, Any]:
    row = (
        (
            await session.execute(
                text("SELECT id, currency, timezone FROM customer WHERE id = :id"),
                {"id": customer_id},
            )
        )
        .mappings()
        .first()
    )
    if row is None:
        raise not_found("customer", customer_id)
    return dict(row)
