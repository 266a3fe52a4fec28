"""Who may do what in the invoice service: its scopes, roles and the route dependencies.

The mechanics (bearer tokens, cache, Idempotency-Key) are duewise_service's; this module
configures them with the invoice service's tables and scopes.
"""

from __future__ import annotations

from typing import Annotated

from duewise_service.auth import Principal, TokenAuth
from duewise_service.idempotency import Idempotency, IdempotencyKeys
from fastapi import Depends

from invoice.models import API_TOKEN_TABLE, IDEMPOTENCY_TABLE

SCOPES: dict[str, str] = {
    "customers:write": "create and change customers and contacts",
    "contacts:write": "replace a customer's contacts (collectors: of their own customers only)",
    "invoices:write": "issue, void, write off and credit invoices",
    "payments:write": "record and reverse payments",
    "disputes:write": "open and resolve disputes",
    "import:write": "bulk-import CSV exports",
    "ar:read": "read customers, invoices, payments and reports",
    "tokens:admin": "create API tokens",
}
ROLE_SCOPES: dict[str, frozenset[str]] = {
    "admin": frozenset(SCOPES),
    "service": frozenset(
        {
            "customers:write",
            "contacts:write",
            "invoices:write",
            "payments:write",
            "disputes:write",
            "import:write",
            "ar:read",
        }
    ),
    "collector": frozenset({"ar:read", "disputes:write", "contacts:write"}),
}

AUTH = TokenAuth(API_TOKEN_TABLE, scopes=SCOPES, role_scopes=ROLE_SCOPES)
IDEMPOTENCY_KEYS = IdempotencyKeys(IDEMPOTENCY_TABLE, AUTH.current_principal)

CurrentPrincipal = Annotated[Principal, Depends(AUTH.current_principal)]
CanWriteCustomers = Annotated[Principal, Depends(AUTH.require("customers:write"))]
CanWriteInvoices = Annotated[Principal, Depends(AUTH.require("invoices:write"))]
CanWritePayments = Annotated[Principal, Depends(AUTH.require("payments:write"))]
CanWriteDisputes = Annotated[Principal, Depends(AUTH.require("disputes:write"))]
CanImport = Annotated[Principal, Depends(AUTH.require("import:write"))]
CanReadAR = Annotated[Principal, Depends(AUTH.require("ar:read"))]
CanAdminTokens = Annotated[Principal, Depends(AUTH.require("tokens:admin"))]
IdempotencyDep = Annotated[Idempotency, Depends(IDEMPOTENCY_KEYS.dependency)]
