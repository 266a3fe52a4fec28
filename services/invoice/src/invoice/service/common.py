"""Helpers shared by the use cases: locking a customer, finding rows, paging."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from duewise_service.problems import DomainError, not_found
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from invoice.models import Customer

T = TypeVar("T")

MAX_LIMIT = 200


class CustomerTerms(Protocol):
    """What pricing an invoice or checking a payment reads of its (locked) customer: a
    `Customer` row, or the lean path's `sql.LockedCustomer`."""

    @property
    def id(self) -> str: ...
    @property
    def external_id(self) -> str | None: ...
    @property
    def currency(self) -> str: ...
    @property
    def invoice_preferences(self) -> dict[str, Any]: ...
    @property
    def payment_terms_days(self) -> int: ...


async def lock_customer(
    session: AsyncSession,
    *,
    customer_id: str | None = None,
    external_id: str | None = None,
    field: str | None = None,
) -> Customer:
    """The customer, its row locked FOR UPDATE until the transaction ends.

    `field` names the request field that referred to it: an unknown customer is then a 422
    naming that field rather than a 404.
    """
    stmt = select(Customer).with_for_update().execution_options(populate_existing=True)
    if customer_id is not None:
        stmt = stmt.where(col(Customer.id) == customer_id)
        ident = customer_id
    elif external_id is not None:
        stmt = stmt.where(col(Customer.external_id) == external_id)
        ident = external_id
        if field == "customer_id":
            field = "customer_external_id"
    else:
        raise DomainError(422, "Customer required", "give customer_id", "customer_id")
    customer: Customer | None = (await session.execute(stmt)).scalar_one_or_none()
    if customer is None:
        raise not_found("customer", ident, field)
    return customer


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of a keyset-paginated list; `next_cursor` is None on the last page."""

    items: Sequence[T]
    next_cursor: str | None


def encode_cursor(last_id: str) -> str:
    return base64.urlsafe_b64encode(last_id.encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> str | None:
    """The id after which the next page starts; 422 naming `cursor` when it is not one of ours."""
    if not cursor:
        return None
    try:
        return base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise DomainError(
            422, "Invalid cursor", "cursor: not a cursor from this API", "cursor"
        ) from exc


def page_of(rows: Sequence[T], limit: int, key: Callable[[T], str]) -> Page[T]:
    """Cut `rows` (fetched with limit + 1, ordered by `key`) into a page and its next cursor."""
    if len(rows) > limit:
        return Page(items=rows[:limit], next_cursor=encode_cursor(key(rows[limit - 1])))
    return Page(items=rows, next_cursor=None)


def check_limit(limit: int) -> int:
    if not 1 <= limit <= MAX_LIMIT:
        raise DomainError(422, "Invalid limit", f"limit: must be 1..{MAX_LIMIT}", "limit")
    return limit
