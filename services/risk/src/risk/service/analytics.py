"""Portfolio analytics over the receivables ledger (`ar_movement`) and the reminder log.

The database adds up per currency; the formulas are the pure ones in risk.domain.analytics.
The as-of date defaults to the latest day in the ledger, not the wall clock, so a rebuilt
database reports what the live one did.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from risk.domain.analytics import (
    AGING_BUCKETS,
    MonthSales,
    bucket,
    cei,
    countback_dso,
    countback_months,
)

COUNTBACK_MONTHS = 12


async def latest_day(session: AsyncSession) -> dt.date:
    day: dt.date | None = await session.scalar(text('SELECT max("on") FROM ar_movement'))
    return day or dt.datetime.now(dt.UTC).date()


async def receivables(session: AsyncSession, on: dt.date) -> dict[str, tuple[int, int]]:
    """Currency -> (all receivables, receivables not yet due) at the end of `on`."""
    rows = await session.execute(
        text(
            "SELECT currency, sum(amount), coalesce(sum(amount) FILTER (WHERE due >= :d), 0) "
            'FROM ar_movement WHERE "on" <= :d GROUP BY currency'
        ),
        {"d": on},
    )
    return {c: (int(total), int(current)) for c, total, current in rows}


async def _monthly_sales(
    session: AsyncSession, as_of: dt.date
) -> tuple[list[tuple[dt.date, dt.date]], dict[str, dict[dt.date, int]]]:
    months = countback_months(as_of, COUNTBACK_MONTHS)
    rows = await session.execute(
        text(
            "SELECT currency, date_trunc('month', \"on\")::date, sum(amount) FROM ar_movement "
            "WHERE kind = 'issued' AND \"on\" BETWEEN :start AND :end GROUP BY 1, 2"
        ),
        {"start": months[-1][0], "end": as_of},
    )
    sales: dict[str, dict[dt.date, int]] = defaultdict(dict)
    for currency, month, amount in rows:
        sales[currency][month] = int(amount)
    return months, sales


async def dso(session: AsyncSession, as_of: dt.date | None) -> list[dict[str, Any]]:
    """DSO (countback), best possible DSO and average days delinquent, per currency."""
    as_of = as_of or await latest_day(session)
    ar = await receivables(session, as_of)
    months, sales = await _monthly_sales(session, as_of)
    out = []
    for currency in sorted(set(ar) | set(sales)):
        total, current = ar.get(currency, (0, 0))
        by_month = [
            MonthSales(first, (last - first).days + 1, sales.get(currency, {}).get(first, 0))
            for first, last in months
        ]
        value = countback_dso(total, by_month)
        best = countback_dso(current, by_month)
        out.append(
            {
                "currency": currency,
                "as_of": as_of.isoformat(),
                "receivables": total,
                "current_receivables": current,
                "overdue_receivables": total - current,
                "dso": value,
                "best_possible_dso": best,
                "average_days_delinquent": (
                    None if value is None or best is None else round(value - best, 2)
                ),
                "sales_by_month": {m.start.isoformat(): m.sales for m in by_month if m.sales},
            }
        )
    return out


async def cei_for(session: AsyncSession, start: dt.date, end: dt.date) -> list[dict[str, Any]]:
    """Collection effectiveness over [start, end], per currency."""
    opening = await receivables(session, start - dt.timedelta(days=1))
    closing = await receivables(session, end)
    rows = await session.execute(
        text(
            "SELECT currency, sum(amount) FROM ar_movement "
            "WHERE kind = 'issued' AND \"on\" BETWEEN :s AND :e GROUP BY currency"
        ),
        {"s": start, "e": end},
    )
    sales = {c: int(a) for c, a in rows}
    out = []
    for currency in sorted(set(opening) | set(closing) | set(sales)):
        b = opening.get(currency, (0, 0))[0]
        e, e_current = closing.get(currency, (0, 0))
        s = sales.get(currency, 0)
        out.append(
            {
                "currency": currency,
                "from": start.isoformat(),
                "to": end.isoformat(),
                "opening_receivables": b,
                "credit_sales": s,
                "closing_receivables": e,
                "closing_current_receivables": e_current,
                "collected": b + s - e,
                "cei": cei(b, s, e, e_current),
            }
        )
    return out


async def aging(session: AsyncSession, as_of: dt.date | None) -> list[dict[str, Any]]:
    """Open balances per currency in days-past-due buckets."""
    as_of = as_of or await latest_day(session)
    rows = await session.execute(
        text(
            'SELECT currency, due, sum(amount) FROM ar_movement WHERE "on" <= :d '
            "GROUP BY currency, invoice_id, due HAVING sum(amount) > 0"
        ),
        {"d": as_of},
    )
    totals: dict[str, dict[str, int]] = {}
    for currency, due, amount in rows:
        buckets = totals.setdefault(currency, {name: 0 for name, _, _ in AGING_BUCKETS})
        buckets[bucket((as_of - due).days)] += int(amount)
    return [
        {"currency": c, "as_of": as_of.isoformat(), **b, "total": sum(b.values())}
        for c, b in sorted(totals.items())
    ]


async def at_risk(session: AsyncSession) -> list[dict[str, Any]]:
    """Open balance of customers in the high and critical bands, per currency."""
    rows = await session.execute(
        text(
            "WITH bal AS (SELECT customer_id, currency, sum(amount) AS b FROM ar_movement "
            "GROUP BY 1, 2 HAVING sum(amount) > 0) "
            "SELECT bal.currency, sum(b), "
            "coalesce(sum(b) FILTER (WHERE p.band IN ('high', 'critical')), 0), "
            "count(*) FILTER (WHERE p.band IN ('high', 'critical')), "
            "coalesce(sum(b) FILTER (WHERE p.band = 'critical'), 0) "
            "FROM bal LEFT JOIN customer_profile p USING (customer_id) "
            "GROUP BY bal.currency ORDER BY bal.currency"
        )
    )
    return [
        {
            "currency": c,
            "open_balance": int(total),
            "at_risk_balance": int(risky),
            "at_risk_customers": int(n),
            "critical_balance": int(critical),
            "at_risk_share": round(int(risky) / int(total), 4) if total else None,
        }
        for c, total, risky, n, critical in rows
    ]


async def step_recovery(session: AsyncSession, days: int) -> list[dict[str, Any]]:
    """Per reminder step: how many reminders were followed within `days` by a payment on an
    invoice they listed, and how much was paid. A payment counts once, for the latest step
    before it; reversed payments do not count."""
    reminders = {
        step: int(n)
        for step, n in await session.execute(
            text("SELECT step_key, count(*) FROM reminder_log GROUP BY step_key")
        )
    }
    rows = await session.execute(
        text(
            "WITH pay AS ("
            '  SELECT m.id, m.customer_id, m.invoice_id, m.currency, m."on", -m.amount AS amount'
            "  FROM ar_movement m WHERE m.kind = 'payment' AND NOT EXISTS ("
            "    SELECT 1 FROM ar_movement x WHERE x.kind = 'reversal' AND x.ref = m.ref"
            "    AND x.invoice_id = m.invoice_id)), "
            "hit AS ("
            "  SELECT DISTINCT ON (pay.id) pay.id, pay.currency, pay.amount, r.id AS reminder,"
            "    r.step_key"
            "  FROM pay JOIN reminder_log r ON r.customer_id = pay.customer_id"
            '    AND pay."on" BETWEEN r."on" AND r."on" + CAST(:days AS integer)'
            "    AND (cardinality(r.invoice_ids) = 0 OR pay.invoice_id = ANY(r.invoice_ids))"
            '  ORDER BY pay.id, r."on" DESC, r.id DESC) '
            "SELECT step_key, currency, count(DISTINCT reminder), sum(amount) FROM hit "
            "GROUP BY 1, 2 ORDER BY 1, 2"
        ),
        {"days": days},
    )
    out = []
    seen: set[str] = set()
    for step, currency, n, amount in rows:
        seen.add(step)
        out.append(
            {
                "step_key": step,
                "days": days,
                "reminders": reminders.get(step, 0),
                "currency": currency,
                "reminders_followed_by_payment": int(n),
                "amount_recovered": int(amount),
                "recovery_rate": round(int(n) / reminders[step], 4)
                if reminders.get(step)
                else None,
            }
        )
    for step, n in sorted(reminders.items()):
        if step not in seen:
            out.append(
                {
                    "step_key": step,
                    "days": days,
                    "reminders": n,
                    "currency": None,
                    "reminders_followed_by_payment": 0,
                    "amount_recovered": 0,
                    "recovery_rate": 0.0,
                }
            )
    out.sort(key=lambda r: (r["step_key"], r["currency"] or ""))
    return out
