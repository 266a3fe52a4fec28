"""PUT /v1/customers/{id}/contacts: replace a customer's contacts (fix the billing contact).

Its own scope, contacts:write, so that a collector can fix an address without holding
customers:write (which also changes terms, credit limits and owners). A collector's token
reaches only the customers it owns: another's answers 404, as if it did not exist.
"""

from __future__ import annotations

from typing import Annotated

from duewise_service.auth import Principal
from duewise_service.db import SessionDep
from duewise_service.problems import not_found
from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from invoice import service
from invoice.api.views import customer_view
from invoice.auth import AUTH, IdempotencyDep
from invoice.models import ContactCreate, CustomerPublic, CustomerUpdate

router = APIRouter(prefix="/customers", tags=["customers"])
CanWriteContacts = Annotated[Principal, Depends(AUTH.require("contacts:write"))]
#: The collector UI names each user's tokens "ui:<user name>"; a customer's owner is the name.
UI_TOKEN_PREFIX = "ui:"


class ContactsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    contacts: list[ContactCreate] = Field(max_length=50)


def may_change(principal: Principal, owner: str | None) -> bool:
    """Collectors change their own customers' contacts; other roles any customer's."""
    if principal.role != "collector":
        return True
    return owner is not None and owner == principal.name.removeprefix(UI_TOKEN_PREFIX)


@router.put("/{customer_id}/contacts", response_model=CustomerPublic)
async def put_contacts(
    customer_id: str,
    data: ContactsIn,
    session: SessionDep,
    idem: IdempotencyDep,
    who: CanWriteContacts,
) -> JSONResponse:
    """Replace the customer's contacts (a customer.updated event says `contacts` changed)."""

    async def write() -> CustomerPublic:
        customer = await service.get_customer(session=session, customer_id=customer_id)
        if not may_change(who, customer.owner):
            raise not_found("customer", customer_id)
        update = CustomerUpdate(contacts=data.contacts)
        changed = await service.update_customer(
            session=session, customer_id=customer_id, data=update
        )
        return await customer_view(session, changed)

    async with session.begin():
        return await idem.run(session, 200, write)
