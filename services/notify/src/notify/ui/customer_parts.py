"""The reads behind the customer page, one part per service, each call within the page's
budget; and what stands in when a service does not answer: a sentence per missing section,
and notify's own copy of who the customer is and what its invoices are numbered."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from notify.models import CustomerProjection, InvoiceProjection
from notify.ui.clients import Api, ServiceError

#: The sections that come from each overview (each says so when its service cannot be read).
INVOICE_PARTS = ("balance", "invoices", "payments", "disputes")
DUNNING_PARTS = ("stage", "timeline", "promises", "pauses")
#: The service behind each of the page's other sections.
SERVICE_OF = {"score": "risk", "signals": "risk", "messages": "notify", "responses": "notify"}
#: What each section is called in the sentence that stands in for it.
SECTIONS = {
    "balance": "The balance and aging",
    "invoices": "Invoices",
    "payments": "Payments",
    "disputes": "Disputes",
    "stage": "The dunning stage",
    "timeline": "What fires next",
    "promises": "Promises to pay",
    "pauses": "Pauses",
    "score": "The risk score",
    "signals": "Warning signs",
    "messages": "Messages",
    "responses": "Responses",
}


@dataclass
class Reader:
    """The customer page's reads as one user, each call within `budget_s`; what could not be
    read is collected as a sentence per section (`problems`) and a reason per service
    (`down`)."""

    api: Api
    customer_id: str
    budget_s: float
    problems: dict[str, str] = field(default_factory=dict)
    down: dict[str, str] = field(default_factory=dict)

    def missing(self, service: str, parts: tuple[str, ...], exc: ServiceError) -> None:
        """Each section in `parts` says it could not be loaded and why; the forms that act
        with `service` say it too (see CustomerPage.blocked)."""
        for name in parts:
            self.problems[name] = (
                f"{SECTIONS[name]} could not be loaded: {exc.why}. Reload to try again."
            )
        self.down.setdefault(service, exc.why)

    async def get(self, service: str, path: str, params: dict[str, Any] | None = None) -> Any:
        """A GET within the budget; None when the service does not know the record."""
        return await self.api.get_or_none(service, path, params, self.budget_s)

    async def invoice_part(self) -> dict[str, Any] | None:
        """The invoice service's overview, with the rest of any list longer than its first
        page; None when the service does not know the customer."""
        overview = await self.get("invoice", f"/v1/customers/{self.customer_id}/overview")
        if overview is None:
            return None
        names = ("invoices", "payments", "disputes")
        lists = await asyncio.gather(
            *(self._the_rest("invoice", f"/v1/{name}", {}, overview[name], name) for name in names)
        )
        return {
            "customer": overview["customer"],
            "balance": overview["balance"],
            "aging": overview["aging"],
            **dict(zip(names, lists, strict=True)),
        }

    async def dunning_part(self) -> dict[str, Any] | None:
        """Dunning's overview (stage, timeline), with its promises and the pauses in force
        (every kind: manual, dispute, promise, in transit); None when dunning has not heard
        of the customer."""
        overview = await self.get("dunning", f"/v1/customers/{self.customer_id}/overview")
        if overview is None:
            return None
        promises, pauses = await asyncio.gather(
            self._the_rest("dunning", "/v1/promises", {}, overview["promises"], "promises"),
            self._the_rest(
                "dunning", "/v1/pauses", {"active": "true"}, overview["pauses"], "pauses"
            ),
        )
        return {
            "stage": overview["stage"],
            "timeline": overview["timeline"],
            "promises": promises,
            "pauses": pauses,
        }

    async def _the_rest(
        self, service: str, path: str, params: dict[str, Any], first: dict[str, Any], name: str
    ) -> list[Any] | None:
        """The first page an overview gave, and the rest of the list when there is more (a
        customer with hundreds of invoices); None, and the sentence, when the rest fails."""
        items: list[Any] = list(first["items"])
        if first.get("next_cursor"):
            query = {**params, "customer_id": self.customer_id, "cursor": first["next_cursor"]}
            try:
                items += await self.api.all_pages(service, path, query, self.budget_s)
            except ServiceError as exc:
                self.missing(service, (name,), exc)
                return None
        return items


async def copy_here(
    session: AsyncSession, customer_id: str, failed: ServiceError
) -> dict[str, Any]:
    """The customer as notify last heard of it (its projection of the invoice service's
    customer events): enough to tell whose customer it is and to reach its contacts while
    the invoice service does not answer. `failed` is raised when that is not enough: the
    service refused rather than failed (a 403 says nothing about availability), or notify
    has not heard of the customer."""
    row = await session.get(CustomerProjection, customer_id) if failed.unavailable else None
    if row is None:
        raise failed
    return {
        "id": row.id,
        "name": row.name,
        "currency": row.currency,
        "timezone": row.timezone,
        "country": row.country,
        "locale": row.locale,
        "owner": row.owner,
        "contacts": row.contacts,
        "as_of": row.updated_at,
    }


async def numbers_here(session: AsyncSession, customer_id: str) -> dict[str, str]:
    """The customer's invoice numbers by id, from notify's own copy: labels only (no balance
    or status is shown from it), for when the invoice service does not answer."""
    rows = await session.execute(
        select(col(InvoiceProjection.id), col(InvoiceProjection.number)).where(
            col(InvoiceProjection.customer_id) == customer_id
        )
    )
    return {r.id: r.number for r in rows}
