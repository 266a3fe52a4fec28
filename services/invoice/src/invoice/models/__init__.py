"""The invoice service's tables and schemas, plus the outbox and inbox on the same metadata."""

from __future__ import annotations

from duewise_events.outbox import Outbox
from duewise_events.tables import inbox_table, outbox_table
from sqlalchemy.orm import configure_mappers
from sqlmodel import SQLModel

from invoice.models.auth import API_TOKEN_TABLE, IDEMPOTENCY_TABLE
from invoice.models.common import Money, PositiveMoney, currency_exponent, new_id, utcnow
from invoice.models.customers import (
    Contact,
    ContactCreate,
    ContactPublic,
    Customer,
    CustomerCreate,
    CustomerPublic,
    CustomerUpdate,
    InvoicePreferences,
)
from invoice.models.invoices import (
    OPEN_STATUSES,
    CreditNote,
    CreditNoteCreate,
    CreditNotePublic,
    Dispute,
    DisputeCreate,
    DisputePublic,
    DisputeResolve,
    Invoice,
    InvoiceCreate,
    InvoiceLine,
    InvoiceLineCreate,
    InvoiceLinePublic,
    InvoicePublic,
    InvoiceStatus,
    VoidRequest,
    WriteOffRequest,
    derive_status,
)
from invoice.models.payments import (
    Allocation,
    AllocationCreate,
    AllocationPublic,
    Payment,
    PaymentCreate,
    PaymentMethod,
    PaymentPublic,
    PaymentReverse,
)

# Every table model is defined: set up their mappers now rather than at the first ORM use.
# The lean write path reads rows built with model_construct (service.invoices.new_invoice),
# whose attributes work only once the mappers are configured, and a fresh process's first
# request may be such a write.
configure_mappers()

OUTBOX_TABLE = outbox_table(SQLModel.metadata)
INBOX_TABLE = inbox_table(SQLModel.metadata)
#: Where every invoice-service event is staged, in the writing transaction.
OUTBOX = Outbox(OUTBOX_TABLE, source="duewise/invoice")
#: The advisory-lock key of this service's relay (one active relay per database).
RELAY_LOCK_KEY = 0x0D0E_1001

__all__ = [
    "API_TOKEN_TABLE",
    "IDEMPOTENCY_TABLE",
    "INBOX_TABLE",
    "OPEN_STATUSES",
    "OUTBOX",
    "OUTBOX_TABLE",
    "RELAY_LOCK_KEY",
    "Allocation",
    "AllocationCreate",
    "AllocationPublic",
    "Contact",
    "ContactCreate",
    "ContactPublic",
    "CreditNote",
    "CreditNoteCreate",
    "CreditNotePublic",
    "Customer",
    "CustomerCreate",
    "CustomerPublic",
    "CustomerUpdate",
    "Dispute",
    "DisputeCreate",
    "DisputePublic",
    "DisputeResolve",
    "Invoice",
    "InvoiceCreate",
    "InvoiceLine",
    "InvoiceLineCreate",
    "InvoiceLinePublic",
    "InvoicePreferences",
    "InvoicePublic",
    "InvoiceStatus",
    "Money",
    "Payment",
    "PaymentCreate",
    "PaymentMethod",
    "PaymentPublic",
    "PaymentReverse",
    "PositiveMoney",
    "SQLModel",
    "VoidRequest",
    "WriteOffRequest",
    "currency_exponent",
    "derive_status",
    "new_id",
    "utcnow",
]
