"""Portfolio measures as pure functions of totals the database adds up (per currency: money
in one currency is never added to money in another).

- DSO by the countback method: walk back month by month from the as-of date, taking each
  month's credit sales out of today's receivables, counting that month's days while the
  receivables cover its sales and a share of them for the month that is only partly covered.
- Best possible DSO: the same countback over the receivables that are not yet due.
- Average days delinquent (ADD) = DSO - best possible DSO.
- CEI = (opening receivables + credit sales - closing receivables) /
        (opening receivables + credit sales - closing current receivables) x 100.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

AGING_BUCKETS: tuple[tuple[str, int, int | None], ...] = (
    ("current", -(10**6), 0),
    ("1_30", 1, 30),
    ("31_60", 31, 60),
    ("61_90", 61, 90),
    ("over_90", 91, None),
)


@dataclass(frozen=True)
class MonthSales:
    """Credit sales of one month, counted up to the as-of date for the current month."""

    start: dt.date
    days: int
    sales: int


def countback_months(as_of: dt.date, months: int) -> list[tuple[dt.date, dt.date]]:
    """[(first day, last day counted)] from the as-of month backwards."""
    out = []
    first = as_of.replace(day=1)
    last = as_of
    for _ in range(months):
        out.append((first, last))
        last = first - dt.timedelta(days=1)
        first = last.replace(day=1)
    return out


def countback_dso(receivables: int, months: Sequence[MonthSales]) -> float | None:
    """Days of sales in `receivables`, newest month first; None with no sales at all."""
    if not any(m.sales for m in months):
        return None
    left = receivables
    days = 0.0
    for month in months:
        if left <= 0:
            break
        if left >= month.sales:
            days += month.days
            left -= month.sales
        else:
            days += month.days * left / month.sales
            left = 0
    return round(days, 2)


def cei(opening: int, sales: int, closing: int, closing_current: int) -> float | None:
    """Collection effectiveness index in percent; None when nothing was collectable."""
    collectable = opening + sales - closing_current
    if collectable <= 0:
        return None
    return round((opening + sales - closing) * 100 / collectable, 2)


def bucket(days_past_due: int) -> str:
    for name, low, high in AGING_BUCKETS:
        if days_past_due >= low and (high is None or days_past_due <= high):
            return name
    return AGING_BUCKETS[0][0]
