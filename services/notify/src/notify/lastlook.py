"""The last look: right before a reminder leaves, ask the invoice service what is still owed.

Notify's own projection may lag the invoice service by a moment (a payment posted in the
same second as the reminder fell due). The invoice service is the system of record, so the
sender asks it, with a short timeout, about every invoice the reminder lists, in one request.
When it cannot be asked, the reminder waits and is tried again: a reminder late by a minute
is a smaller wrong than a reminder for an invoice that is already paid.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import httpx

#: Statuses in which nothing may be dunned.
CLOSED = frozenset({"paid", "void", "written_off", "disputed"})


@dataclass(frozen=True)
class InvoiceState:
    status: str
    balance: int

    @property
    def owed(self) -> bool:
        return self.status not in CLOSED and self.balance > 0


class LastLookUnavailable(Exception):
    """The invoice service could not say in time; try the reminder again later."""


class LastLook(Protocol):
    async def states(self, invoice_ids: Sequence[str]) -> dict[str, InvoiceState]:
        """The current state of each invoice; raises LastLookUnavailable."""
        ...


#: The most ids the invoice API answers in one request (`GET /v1/invoices?id=…`).
IDS_PER_REQUEST = 200

#: What an invoice absent from the answer is: unknown to the system of record, so certainly
#: nothing to dun (what a 404 for it meant when it was asked about alone).
UNKNOWN = InvoiceState(status="void", balance=0)


class InvoiceApiLastLook:
    """`GET {INVOICE_API_URL}/v1/invoices?id=…&id=…`: one request per reminder (per 200 ids).

    One request for a whole reminder instead of one per invoice: each request costs the
    invoice API and the sender more CPU than the rows it reads (reminders of 12 invoices,
    bench/notify_bench's reminder run: sender 42-44 -> 6.9 CPU ms, invoice API 64-65 -> 6.3
    CPU ms per reminder)."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client

    @classmethod
    def from_settings(
        cls, base_url: str, token: str | None, timeout_s: float
    ) -> InvoiceApiLastLook:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return cls(httpx.AsyncClient(base_url=base_url, headers=headers, timeout=timeout_s))

    async def states(self, invoice_ids: Sequence[str]) -> dict[str, InvoiceState]:
        wanted = list(dict.fromkeys(invoice_ids))
        chunks = [wanted[i : i + IDS_PER_REQUEST] for i in range(0, len(wanted), IDS_PER_REQUEST)]
        try:
            answers = await asyncio.gather(*(self._some(c) for c in chunks))
        except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
            raise LastLookUnavailable(f"invoice API: {type(exc).__name__}: {exc}") from exc
        found: dict[str, InvoiceState] = {}
        for answer in answers:
            found.update(answer)
        return {i: found.get(i, UNKNOWN) for i in wanted}

    async def _some(self, invoice_ids: list[str]) -> dict[str, InvoiceState]:
        response = await self.client.get("/v1/invoices", params=[("id", i) for i in invoice_ids])
        response.raise_for_status()
        page = response.json()
        answer = {
            str(item["id"]): InvoiceState(status=str(item["status"]), balance=int(item["balance"]))
            for item in page["items"]
        }
        # An invoice API older than the `id` filter ignores it and answers the first page of
        # all invoices: absence in that answer says nothing, so it must not read as "not owed".
        if page.get("next_cursor") or not answer.keys() <= set(invoice_ids):
            raise ValueError("the answer is not the invoices asked for (no `id` filter?)")
        return answer

    async def aclose(self) -> None:
        await self.client.aclose()
