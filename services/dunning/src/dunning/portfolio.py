"""Object-level access in dunning: a collector's token acts only on its own portfolio.

The same rule as the invoice and risk services (see invoice.portfolio): a token bound to a
person (`subject`) with the collector role may read or act on a customer only when the
customer's owner — kept on dunning's customer projection from customer.created/updated — is
that person. The customers a request is about are found in the path (`customer_id`, or the
customer of the `invoice_id` or `pause_id`), in the query (`customer_id`, repeatable on
/v1/stages) and in the body of the writes that name them (promises, pauses). Another
portfolio's customer gets 404, the answer for an id that does not exist, so guessing ids
reveals nothing; a list of promises or pauses not narrowed to one customer gets 403.

Admins, systems (`service` tokens) and collector tokens without a subject are not bound.
"""

from __future__ import annotations

import json
from typing import Any

from duewise_service.db import SessionDep
from duewise_service.portfolio import bound_to_portfolio, not_in_portfolio, outside_portfolio
from fastapi import Request
from sqlalchemy import Table, select

from dunning.auth import CurrentPrincipal
from dunning.models import CustomerProjection, InvoiceProjection, Pause


def _table(model: object) -> Table:
    table: Table = model.__table__  # type: ignore[attr-defined]
    return table


_CUSTOMER = _table(CustomerProjection)
_INVOICE = _table(InvoiceProjection)
_PAUSE = _table(Pause)
#: Lists a collector must narrow to one customer.
_LISTS = {"/v1/promises", "/v1/pauses", "/v1/stages"}
#: Writes whose body names the customer (and invoices) they act on.
_BODY_WRITES = {"/v1/promises", "/v1/pauses"}


async def _body(request: Request) -> dict[str, Any]:
    """The JSON body, or {} when it is not an object (the route's validation answers that)."""
    try:
        data = json.loads(await request.body() or b"{}")
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


async def portfolio_guard(
    request: Request, session: SessionDep, principal: CurrentPrincipal
) -> None:
    """404 for another portfolio's customer, 403 for a list wider than the caller's own."""
    if not bound_to_portfolio(principal):
        return
    path, query = request.url.path.rstrip("/"), request.query_params
    customer_ids = {str(c) for c in query.getlist("customer_id")}
    if path in _LISTS and request.method == "GET" and not customer_ids:
        raise outside_portfolio("name a customer of your portfolio: customer_id=…")
    if cid := request.path_params.get("customer_id"):
        customer_ids.add(str(cid))
    invoice_ids: set[str] = set()
    if iid := request.path_params.get("invoice_id"):
        invoice_ids.add(str(iid))
    if path in _BODY_WRITES and request.method == "POST":
        body = await _body(request)
        if isinstance(body.get("customer_id"), str):
            customer_ids.add(body["customer_id"])
        listed = body.get("invoice_ids")
        named = [*(listed if isinstance(listed, list) else []), body.get("invoice_id")]
        invoice_ids.update(i for i in named if isinstance(i, str))
    async with session.begin():
        if pause_id := request.path_params.get("pause_id"):
            # A pause names its customer, or the invoice it stops; an unknown id is the route's 404.
            pause = (
                await session.execute(
                    select(_PAUSE.c.customer_id, _PAUSE.c.invoice_id).where(
                        _PAUSE.c.id == str(pause_id)
                    )
                )
            ).first()
            if pause is not None:
                customer_ids.update(c for c in (pause.customer_id,) if c)
                invoice_ids.update(i for i in (pause.invoice_id,) if i)
        if invoice_ids:
            customer_ids.update(
                await session.scalars(
                    select(_INVOICE.c.customer_id).where(_INVOICE.c.id.in_(invoice_ids))
                )
            )
        if not customer_ids:
            return
        rows = await session.execute(
            select(_CUSTOMER.c.id, _CUSTOMER.c.owner).where(_CUSTOMER.c.id.in_(customer_ids))
        )
        owners = {customer_id: owner for customer_id, owner in rows}
    for cid in sorted(customer_ids):
        if owners.get(cid) != principal.subject:
            raise not_in_portfolio(cid)
