"""What the invoice service does with other services' events (run by `invoice consumer`).

Two things: dunning's `fee.assessed.v1` becomes a fee invoice, so every balance a customer
owes lives in one place; notify's `message.failed.v1` saying a contact's address no longer
works marks that contact undeliverable (and `customer.updated.v1` tells everyone).

Each handler runs inside the consumer's transaction, next to the inbox row, so its effect
(and the events it stages in the outbox) commit exactly once.

Fee invoices:

- `external_id` is the assessment's `fee_id`: an assessment that comes again (a redelivery,
  or dunning re-emitting it under a new event id) finds its invoice and does nothing.
- `number` is `FEE-` plus the first 10 hex digits of SHA-256(fee_id), upper case: stable
  for the same fee, short enough to print, and unique per customer (a longer digest is
  used in the, in practice impossible, case that the short one is taken).
- `issue_date` is the day the fee was assessed; the due date follows the customer's
  payment terms, exactly as for any invoice issued without an explicit due date, so the
  customer gets the usual time to pay it and it is not overdue the moment it exists.
- A fee in a currency other than the customer's, for an invoice this service does not
  know, or for another customer's invoice raises `FeeRejected`: the consumer retries the
  record, then parks it on `dunning.events.dlt` with the reason in its headers.
- A zero amount issues nothing (an invoice for nothing would be born paid).

Bounces:

- Only a failure with `contact_undeliverable` and a `contact_id` changes anything; the
  contact must be one of the event's customer's contacts (contacts are replaced when a
  customer is updated with new ones, so an old id is simply gone: logged, nothing to do).
- Under the customer's row lock the contact is flagged if it is not already, and
  `customer.updated.v1` (changed: contacts) is staged; a redelivery, or a second bounce for
  the same contact, changes nothing and emits nothing.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping

from duewise_events.catalogue import Event, FeeAssessed, MessageFailed
from duewise_events.consumer import Handler
from duewise_events.envelope import Envelope
from duewise_service.redact import redact_text
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from invoice.models import Invoice, InvoiceCreate, InvoiceLineCreate
from invoice.service.common import lock_customer
from invoice.service.customers import mark_contact_undeliverable
from invoice.service.invoices import issue_invoice

log = logging.getLogger("invoice.handlers")

FEE_KIND_LABELS = {"late_fee": "Late fee", "interest": "Interest"}
#: Digest lengths tried for a fee invoice's number, shortest first.
_NUMBER_DIGITS = (10, 20, 64)


class FeeRejected(ValueError):
    """A fee assessment this service cannot turn into an invoice (the record's fault)."""


def fee_invoice_number(fee_id: str, digits: int = _NUMBER_DIGITS[0]) -> str:
    """The fee invoice's number: `FEE-` and a short, stable digest of the fee id."""
    return f"FEE-{hashlib.sha256(fee_id.encode()).hexdigest()[:digits].upper()}"


async def on_fee_assessed(session: AsyncSession, event: Event, envelope: Envelope) -> None:
    """Issue one fee invoice for a `fee.assessed.v1`, at most once per `fee_id`."""
    assert isinstance(event, FeeAssessed)
    # The customer's lock orders this against every other write for the customer, including
    # a concurrent copy of the same assessment (which then sees the invoice and stops).
    customer = await lock_customer(session, customer_id=event.customer_id)
    existing = await session.scalar(
        select(Invoice.id).where(col(Invoice.external_id) == event.fee_id)
    )
    if existing is not None:
        log.info("fee %s already invoiced as %s (event %s)", event.fee_id, existing, envelope.id)
        return
    if event.currency != customer.currency:
        raise FeeRejected(
            f"fee {event.fee_id} is in {event.currency} but customer {customer.id} is billed "
            f"in {customer.currency}; a fee invoice must be in the customer's currency"
        )
    original = await session.scalar(select(Invoice).where(col(Invoice.id) == event.invoice_id))
    if original is None:
        raise FeeRejected(f"fee {event.fee_id} is for unknown invoice {event.invoice_id}")
    if original.customer_id != customer.id:
        raise FeeRejected(
            f"fee {event.fee_id} names customer {customer.id} but invoice {original.id} "
            f"belongs to customer {original.customer_id}"
        )
    if event.amount == 0:
        log.info("fee %s has a zero amount: nothing to invoice", event.fee_id)
        return
    label = FEE_KIND_LABELS.get(event.kind, event.kind)
    description = f"{label} on invoice {original.number}: {event.reason}"
    invoice = (
        await issue_invoice(
            session=session,
            data=InvoiceCreate(
                customer_id=customer.id,
                number=await _free_number(session, customer.id, event.fee_id),
                external_id=event.fee_id,
                issue_date=event.assessed_on,
                currency=event.currency,
                # A customer that requires a PO on every invoice gets the original's.
                po_number=original.po_number,
                kind="fee",
                total=event.amount,
                lines=[
                    InvoiceLineCreate(
                        description=_clip(description, 500), quantity=1, unit_price=event.amount
                    )
                ],
            ),
        )
    ).invoice
    log.info("fee %s invoiced as %s (%s)", event.fee_id, invoice.number, invoice.id)


async def _free_number(session: AsyncSession, customer_id: str, fee_id: str) -> str:
    for digits in _NUMBER_DIGITS:
        number = fee_invoice_number(fee_id, digits)
        taken = await session.scalar(
            select(Invoice.id).where(
                col(Invoice.customer_id) == customer_id, col(Invoice.number) == number
            )
        )
        if taken is None:
            return number
    # Every digest length taken: let issue_invoice refuse it as a duplicate number.
    return fee_invoice_number(fee_id, _NUMBER_DIGITS[-1])


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


async def on_message_failed(session: AsyncSession, event: Event, envelope: Envelope) -> None:
    """Mark the contact undeliverable when a `message.failed.v1` says its address is dead."""
    assert isinstance(event, MessageFailed)
    if not event.contact_undeliverable or event.contact_id is None:
        return
    changed = await mark_contact_undeliverable(
        session=session, customer_id=event.customer_id, contact_id=event.contact_id
    )
    if changed is None:
        log.info(
            "message %s: contact %s of customer %s is unknown or already undeliverable (event %s)",
            event.message_id,
            event.contact_id,
            event.customer_id,
            envelope.id,
        )
    else:
        log.info(
            "contact %s of customer %s marked undeliverable (%s: %s)",
            event.contact_id,
            event.customer_id,
            event.channel,
            redact_text(event.reason),  # a bounce quotes the address: not in logs
        )


#: The events the invoice service consumes, and what it does with each.
HANDLERS: Mapping[type[Event], Handler] = {
    FeeAssessed: on_fee_assessed,
    MessageFailed: on_message_failed,
}
#: The topics those events arrive on.
TOPICS: list[str] = sorted({event_type.TOPIC for event_type in HANDLERS})
