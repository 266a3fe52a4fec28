"""A customer's line on the collectors' worklist, read from its folded state.

The worklist is the risk service's read model for the collector UI: one narrow row per known
customer, written in the same transaction as the profile, so that the UI pages through
100,000 customers with one index scan instead of calling four services per customer.

Working order: customers under dispute or waiting on a promise go last ("pushed down");
then by risk band (critical first), then by overdue amount (largest first), then by id.
`overdue_rank` is the overdue amount negated so that one ascending index serves both the
order and the cursor's row comparison.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from risk.domain.metrics import balances, main_currency
from risk.domain.state import CustomerState

BAND_RANK = {"critical": 0, "high": 1, "medium": 2, "low": 3}
#: Customers not scored yet sort after every band.
UNSCORED_RANK = 4


def worklist_row(state: CustomerState, today: int | None = None) -> dict[str, Any]:
    """The worklist row of a known customer.

    Amounts are in the customer's own currency. "Overdue" is counted on `today` (an
    ordinal; by default the later of the customer's latest event and the wall clock's
    UTC date, so an invoice falls overdue here even on a day nothing happened to it).
    """
    if today is None:
        today = max(state.today, dt.datetime.now(dt.UTC).date().toordinal())
    currency = main_currency(state)
    open_, overdue = balances(state, today).get(currency or "", (0, 0))
    oldest_due = min(
        (
            inv["due"]
            for inv in state.invoices.values()
            if inv["currency"] == currency
            and inv["balance"] > 0
            and inv["status"] not in ("void", "written_off")
            and inv["due"] < today
        ),
        default=None,
    )
    broken = len(state.promises_broken)
    promise_pending = state.promises_made > len(state.promises_kept) + broken
    disputes = len(state.open_disputes)
    return {
        "customer_id": state.customer_id,
        "name": state.name or state.customer_id,
        "owner": state.owner,
        "currency": currency,
        "band": state.band,
        "score": state.score,
        "open_amount": open_,
        "overdue": overdue,
        "oldest_overdue_days": today - oldest_due if oldest_due is not None else 0,
        "broken_promises": broken,
        "open_disputes": disputes,
        "promise_pending": promise_pending,
        "stage": state.stage,
        "on_hold": state.on_hold,
        "pushed_down": disputes > 0 or promise_pending,
        "band_rank": BAND_RANK.get(state.band or "", UNSCORED_RANK),
        "overdue_rank": -overdue,
        "as_of": state.instant,
    }
