"""The last look: ask the invoice service, right before a reminder goes out, what is still open."""

from __future__ import annotations

from typing import Any, Protocol

import httpx


class LastLook(Protocol):
    async def open_balances(self, customer_id: str) -> dict[str, int]:
        """invoice id -> balance, for every invoice of the customer still open (not disputed)."""
        ...


class InvoiceApiLastLook:
    """`GET {INVOICE_API_URL}/v1/invoices?customer_id=…&status=open,partially_paid`, all pages."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client

    @classmethod
    def from_settings(cls, base_url: str, token: str | None) -> InvoiceApiLastLook:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return cls(httpx.AsyncClient(base_url=base_url, headers=headers, timeout=5.0))

    async def open_balances(self, customer_id: str) -> dict[str, int]:
        found: dict[str, int] = {}
        params: dict[str, Any] = {
            "customer_id": customer_id,
            "status": "open,partially_paid",
            "limit": 200,
        }
        while True:
            response = await self.client.get("/v1/invoices", params=params)
            response.raise_for_status()
            page = response.json()
            for item in page["items"]:
                found[item["id"]] = int(item["balance"])
            if not page.get("next_cursor"):
                return found
            params["cursor"] = page["next_cursor"]

    async def aclose(self) -> None:
        await self.client.aclose()
