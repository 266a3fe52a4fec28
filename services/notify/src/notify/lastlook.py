"""The last look: right before a reminder leaves, ask the invoice service what is still owed.

Notify's own projection may lag the invoice service by a moment (a payment posted in the
same second as the reminder fell due). The invoice service is the system of record, so the
sender asks it, with a short timeout, for each invoice the reminder lists. When it cannot be
asked, the reminder waits and is tried again: a reminder late by a minute is a smaller
wrong than a reminder for an invoice that is already paid.
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


class InvoiceApiLastLook:
    """`GET {INVOICE_API_URL}/v1/invoices/{id}` for each invoice, concurrently."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client

    @classmethod
    def from_settings(
        cls, base_url: str, token: str | None, timeout_s: float
    ) -> InvoiceApiLastLook:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return cls(httpx.AsyncClient(base_url=base_url, headers=headers, timeout=timeout_s))

    async def states(self, invoice_ids: Sequence[str]) -> dict[str, InvoiceState]:
        try:
            answers = await asyncio.gather(*(self._one(i) for i in invoice_ids))
        except (httpx.HTTPError, ValueError, KeyError) as exc:
            raise LastLookUnavailable(f"invoice API: {type(exc).__name__}: {exc}") from exc
        return dict(answers)

    async def _one(self, invoice_id: str) -> tuple[str, InvoiceState]:
        response = await self.client.get(f"/v1/invoices/{invoice_id}")
        if response.status_code == 404:
            # Unknown to the system of record: certainly nothing to dun.
            return invoice_id, InvoiceState(status="void", balance=0)
        response.raise_for_status()
        body = response.json()
        return invoice_id, InvoiceState(status=str(body["status"]), balance=int(body["balance"]))

    async def aclose(self) -> None:
        await self.client.aclose()
