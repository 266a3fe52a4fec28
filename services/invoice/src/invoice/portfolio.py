"""Object-level access: a collector's token sees only the collector's own portfolio.

A token bound to a person (`subject`, set when the collector UI mints a user's tokens) and
holding the collector role may read and act on a customer only when `customer.owner` is that
person. Every /v1 request passes through `portfolio_guard`, which finds the customers a
request is about — a `customer_id` in the path or query, or the customer of the invoice,
dispute or payment in the path — and answers 404 for another portfolio's (the same answer
as for an id that does not exist, so guessing ids reveals nothing). Lists that are not
narrowed to one customer (or, for customers, to `owner=<the collector>`) and the
portfolio-wide reports are refused with 403: a collector asks for their own.

Admins, systems (`service` tokens) and collector tokens minted before subjects existed are
not portfolio-bound.
"""

from __future__ import annotations

from duewise_service.db import SessionDep
from duewise_service.portfolio import bound_to_portfolio, not_in_portfolio, outside_portfolio
from fastapi import Request
from sqlalchemy import Table, select

from invoice.auth import CurrentPrincipal
from invoice.models import Customer, Dispute, Invoice, Payment


def _table(model: object) -> Table:
    table: Table = model.__table__  # type: ignore[attr-defined]
    return table


#: Path parameter → the table whose row names the customer.
_OWNED_BY_CUSTOMER = {
    "invoice_id": _table(Invoice),
    "dispute_id": _table(Dispute),
    "payment_id": _table(Payment),
}
_CUSTOMER = _table(Customer)
#: Lists a collector must narrow to one customer.
_LISTS = {"/v1/invoices", "/v1/payments", "/v1/disputes"}


async def portfolio_guard(
    request: Request, session: SessionDep, principal: CurrentPrincipal
) -> None:
    """404 for another portfolio's customer, 403 for a list wider than the caller's own."""
    if not bound_to_portfolio(principal):
        return
    path, query = request.url.path.rstrip("/"), request.query_params
    if path == "/v1/customers" and request.method == "GET":
        if query.get("owner") != principal.subject:
            raise outside_portfolio(f"list your own portfolio: owner={principal.subject}")
        return
    if path.startswith("/v1/reports"):
        raise outside_portfolio("portfolio-wide reports are for admins and systems")
    if path in _LISTS and request.method == "GET" and not query.get("customer_id"):
        raise outside_portfolio("name a customer of your portfolio: customer_id=…")

    customer_ids: set[str] = set()
    if cid := request.path_params.get("customer_id"):
        customer_ids.add(str(cid))
    if cid := query.get("customer_id"):
        customer_ids.add(cid)
    async with session.begin():
        for param, table in _OWNED_BY_CUSTOMER.items():
            if ident := request.path_params.get(param):
                owner_of = await session.scalar(
                    select(table.c.customer_id).where(table.c.id == str(ident))
                )
                if owner_of is not None:  # an unknown id is the route's own 404
                    customer_ids.add(owner_of)
        for cid in customer_ids:
            owner = await session.scalar(select(_CUSTOMER.c.owner).where(_CUSTOMER.c.id == cid))
            if owner != principal.subject:
                raise not_in_portfolio(cid)
