"""The worklist: the user's customers in working order, a page at a time.

The order and the figures are the risk service's worklist projection (one index scan a page,
however big the book); dunning's stage, credit hold and open promises for the page's
customers come in one more call. Two calls a page, whatever the number of customers.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from notify.ui.clients import Api, ServiceError
from notify.ui.views import may_see, promises_recorded

#: Customers on one worklist page.
PAGE_ROWS = 50


@dataclass
class WorkRow:
    id: str
    name: str
    owner: str | None
    currency: str
    band: str | None
    score: int | None
    overdue: int
    open: int
    oldest_overdue_days: int
    stage: str | None
    on_hold: bool
    broken_promises: int
    disputed: bool
    promise_pending: bool
    problems: list[str] = field(default_factory=list)

    @property
    def pushed_down(self) -> bool:
        """Under dispute or waiting on a promise: worked after the others."""
        return self.disputed or self.promise_pending


@dataclass
class WorkList:
    rows: list[WorkRow]
    #: The cursor of the next page; None on the last one.
    next_cursor: str | None
    #: A sentence per service that could not add its part (the rows still show).
    problems: list[str] = field(default_factory=list)


def _row(doc: dict[str, Any]) -> WorkRow:
    return WorkRow(
        id=doc["customer_id"],
        name=doc["name"],
        owner=doc.get("owner"),
        currency=doc.get("currency") or "",
        band=doc.get("band"),
        score=doc.get("score"),
        overdue=int(doc.get("overdue", 0)),
        open=int(doc.get("open", 0)),
        oldest_overdue_days=int(doc.get("oldest_overdue_days", 0)),
        stage=doc.get("stage"),
        on_hold=bool(doc.get("on_hold")),
        broken_promises=int(doc.get("broken_promises", 0)),
        disputed=int(doc.get("open_disputes", 0)) > 0,
        promise_pending=bool(doc.get("promise_pending")),
    )


async def worklist(
    api: Api,
    session: AsyncSession,
    *,
    owner: str | None,
    band: str | None = None,
    stage: str | None = None,
    currency: str | None = None,
    cursor: str | None = None,
    limit: int | None = None,
    budget_s: float | None = None,
) -> WorkList:
    """One page of the user's customers with their risk, overdue amount and stage, in
    working order (disputed or promised last, then band, then overdue amount)."""
    query: dict[str, Any] = {"limit": limit or PAGE_ROWS}
    for name, value in (("owner", owner), ("band", band), ("stage", stage)):
        if value:
            query[name] = value
    if currency:
        query["currency"] = currency
    if cursor:
        query["cursor"] = cursor
    page = await api.get("risk", "/v1/worklist", query)
    # Risk limits a collector's token to its portfolio; may_see decides here as well.
    rows = [_row(d) for d in page["items"] if may_see(api.user, d)]
    problems: list[str] = []
    ids = [r.id for r in rows]
    if ids:
        try:
            # Dunning's word on stage, hold and promises (one made a minute ago included),
            # within the page's budget: risk's rows are the page, this only freshens them.
            now = await api.get("dunning", "/v1/stages", {"customer_id": ids}, budget_s)
            by_id = {d["customer_id"]: d for d in now["items"]}
            for r in rows:
                d = by_id.get(r.id)
                if d is not None:
                    r.stage, r.on_hold = d["stage"], bool(d["on_hold"])
                    r.promise_pending = r.promise_pending or d["open_promises"] > 0
        except ServiceError as exc:
            problems.append(exc.sentence)
            # The promises recorded here stand in for dunning's list.
            today = dt.datetime.now(dt.UTC).date()
            promised = {
                p["customer_id"]
                for p in await promises_recorded(session, ids)
                if p["promised_on"] >= today
            }
            for r in rows:
                r.promise_pending = r.promise_pending or r.id in promised
    # Risk's order, with what dunning just said applied within the page: a customer whose
    # promise risk has not heard of yet goes after the others here already.
    rows.sort(key=lambda r: r.pushed_down)
    return WorkList(rows, page.get("next_cursor"), problems)
