"""Customer use cases: create, update (contacts replaceable), read, list."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from duewise_events.catalogue import (
    ContactSnapshot,
    CustomerCreated,
    CustomerUpdated,
    InvoicePreferencesSnapshot,
)
from duewise_service.problems import DomainError, not_found
from sqlalchemy import delete, func
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from invoice.models import (
    OUTBOX,
    Contact,
    ContactCreate,
    Customer,
    CustomerCreate,
    CustomerUpdate,
    Invoice,
    Payment,
    utcnow,
)
from invoice.service.common import Page, check_limit, decode_cursor, lock_customer, page_of


async def create_customer(*, session: AsyncSession, data: CustomerCreate) -> Customer:
    """Create a customer with its contacts and stage CustomerCreated."""
    if data.external_id is not None:
        await _check_external_id_free(session, data.external_id)
    customer = Customer(
        **data.model_dump(exclude={"contacts", "tags", "invoice_preferences"}),
        tags=list(data.tags),
        invoice_preferences=data.invoice_preferences.model_dump(mode="json"),
    )
    session.add(customer)
    await session.flush()
    contacts = _contacts(customer.id, data.contacts)
    session.add_all(contacts)
    await OUTBOX.add(session, CustomerCreated(**_snapshot(customer, contacts)))
    return customer


async def update_customer(
    *, session: AsyncSession, customer_id: str, data: CustomerUpdate
) -> Customer:
    """Change the fields given (contacts, when given, replace all) and stage CustomerUpdated."""
    customer = await lock_customer(session, customer_id=customer_id)
    given = data.model_dump(exclude_unset=True)
    changed: list[str] = []
    for name, value in given.items():
        if name == "contacts":
            continue
        if value is None and name not in {"credit_limit", "external_id", "owner"}:
            raise DomainError(422, "Field cannot be null", f"{name}: cannot be set to null", name)
        new: Any = value
        if name == "invoice_preferences" and data.invoice_preferences is not None:
            new = data.invoice_preferences.model_dump(mode="json")
        if getattr(customer, name) != new:
            changed.append(name)
    if "external_id" in changed and data.external_id is not None:
        await _check_external_id_free(session, data.external_id)
    if "currency" in changed and await _has_receivables(session, customer.id):
        raise DomainError(
            409,
            "Currency is fixed",
            "currency: the customer already has invoices or payments in "
            f"{customer.currency}; create a new customer for another currency",
            "currency",
        )
    for name in changed:
        value = getattr(data, name)
        if name == "invoice_preferences":
            value = value.model_dump(mode="json")
        setattr(customer, name, value)
    if data.contacts is not None:
        await session.execute(delete(Contact).where(col(Contact.customer_id) == customer.id))
        contacts = _contacts(customer.id, data.contacts)
        session.add_all(contacts)
        changed.append("contacts")
    else:
        contacts = list(await customer_contacts(session, customer.id))
    customer.updated_at = utcnow()
    session.add(customer)
    await OUTBOX.add(
        session, CustomerUpdated(**_snapshot(customer, contacts), changed=sorted(changed))
    )
    return customer


async def mark_contact_undeliverable(
    *, session: AsyncSession, customer_id: str, contact_id: str
) -> Customer | None:
    """Flag one of the customer's contacts undeliverable and stage CustomerUpdated; None when
    nothing changes (unknown customer or contact, or the contact is already flagged)."""
    customer: Customer | None = await session.scalar(
        select(Customer)
        .where(col(Customer.id) == customer_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    if customer is None:
        return None
    # Fresh from the database (read under the customer's lock), not from the identity map.
    contacts = list(
        (
            await session.execute(
                select(Contact)
                .where(col(Contact.customer_id) == customer.id)
                .order_by(col(Contact.position), col(Contact.id))
                .execution_options(populate_existing=True)
            )
        )
        .scalars()
        .all()
    )
    contact = next((c for c in contacts if c.id == contact_id), None)
    if contact is None or contact.undeliverable:
        return None
    contact.undeliverable = True
    customer.updated_at = utcnow()
    session.add_all([contact, customer])
    await OUTBOX.add(
        session, CustomerUpdated(**_snapshot(customer, contacts), changed=["contacts"])
    )
    return customer


async def get_customer(*, session: AsyncSession, customer_id: str) -> Customer:
    """The customer, or a 404."""
    customer = await session.get(Customer, customer_id)
    if customer is None:
        raise not_found("customer", customer_id)
    return customer


async def customer_contacts(session: AsyncSession, customer_id: str) -> Sequence[Contact]:
    """The customer's contacts, in the order they were given."""
    stmt = (
        select(Contact)
        .where(col(Contact.customer_id) == customer_id)
        .order_by(col(Contact.position), col(Contact.id))
    )
    return (await session.execute(stmt)).scalars().all()


async def list_customers(
    *,
    session: AsyncSession,
    limit: int = 50,
    cursor: str | None = None,
    external_id: str | None = None,
    tag: str | None = None,
    owner: str | None = None,
) -> Page[Customer]:
    """Customers oldest first, keyset-paginated by id; one owner's portfolio when given."""
    check_limit(limit)
    stmt = select(Customer).order_by(col(Customer.id)).limit(limit + 1)
    after = decode_cursor(cursor)
    if after:
        stmt = stmt.where(col(Customer.id) > after)
    if external_id is not None:
        stmt = stmt.where(col(Customer.external_id) == external_id)
    if tag is not None:
        stmt = stmt.where(col(Customer.tags).contains([tag]))
    if owner is not None:
        stmt = stmt.where(col(Customer.owner) == owner)
    rows = (await session.execute(stmt)).scalars().all()
    return page_of(rows, limit, lambda c: c.id)


def _contacts(customer_id: str, given: Sequence[ContactCreate]) -> list[Contact]:
    return [
        Contact(customer_id=customer_id, position=i, **c.model_dump()) for i, c in enumerate(given)
    ]


async def _check_external_id_free(session: AsyncSession, external_id: str) -> None:
    taken = await session.scalar(
        select(func.count()).select_from(Customer).where(col(Customer.external_id) == external_id)
    )
    if taken:
        raise DomainError(
            409,
            "Duplicate external id",
            f"external_id: a customer with external_id {external_id!r} already exists",
            "external_id",
        )


async def _has_receivables(session: AsyncSession, customer_id: str) -> bool:
    inv = await session.scalar(
        select(func.count()).select_from(Invoice).where(col(Invoice.customer_id) == customer_id)
    )
    pay = await session.scalar(
        select(func.count()).select_from(Payment).where(col(Payment.customer_id) == customer_id)
    )
    return bool(inv or pay)


def _snapshot(customer: Customer, contacts: Sequence[Contact]) -> dict[str, Any]:
    return {
        "customer_id": customer.id,
        "external_id": customer.external_id,
        "name": customer.name,
        "currency": customer.currency,
        "timezone": customer.timezone,
        "country": customer.country,
        "locale": customer.locale,
        "payment_terms_days": customer.payment_terms_days,
        "credit_limit": customer.credit_limit,
        "owner": customer.owner,
        "tags": list(customer.tags),
        "contacts": [
            ContactSnapshot(
                id=c.id,
                name=c.name,
                email=c.email,
                phone=c.phone,
                role=c.role,
                undeliverable=c.undeliverable,
            )
            for c in contacts
        ],
        "invoice_preferences": InvoicePreferencesSnapshot(**customer.invoice_preferences),
    }
