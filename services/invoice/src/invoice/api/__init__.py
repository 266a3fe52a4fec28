"""HTTP routes, all under /v1 (health at the root): parse → service call → public schema."""

from fastapi import APIRouter

from invoice.api import (
    contacts,
    customers,
    health,
    imports,
    invoices,
    overview,
    payments,
    reports,
    tokens,
)

v1 = APIRouter(prefix="/v1")
for _module in (customers, contacts, overview, invoices, payments, reports, tokens, imports):
    v1.include_router(_module.router)

__all__ = ["health", "v1"]
