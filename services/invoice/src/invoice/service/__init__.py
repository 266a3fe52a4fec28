"""Use cases: each changes rows and stages its outbox events; none commits (the caller does).

Every write that touches a customer's receivables first locks that customer's row
(`SELECT … FOR UPDATE`), so two concurrent writes for one customer commit — and take their
outbox ids — in the same order, and consumers see that customer's events in order.
"""

from invoice.service.credit_notes import issue_credit_note
from invoice.service.customers import create_customer, get_customer, list_customers, update_customer
from invoice.service.disputes import open_dispute, resolve_dispute
from invoice.service.invoice_queries import get_invoice, list_invoices
from invoice.service.invoices import issue_invoice, void_invoice, write_off_invoice
from invoice.service.payments import get_payment, list_payments, record_payment, reverse_payment
from invoice.service.reports import aging_report, customer_balance

__all__ = [
    "aging_report",
    "create_customer",
    "customer_balance",
    "get_customer",
    "get_invoice",
    "get_payment",
    "issue_credit_note",
    "issue_invoice",
    "list_customers",
    "list_invoices",
    "list_payments",
    "open_dispute",
    "record_payment",
    "resolve_dispute",
    "reverse_payment",
    "update_customer",
    "void_invoice",
    "write_off_invoice",
]
