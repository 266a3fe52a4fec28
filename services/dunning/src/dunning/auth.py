"""Who may do what in the dunning service: its scopes, roles and the route dependencies.

The mechanics (bearer tokens, cache, Idempotency-Key) are duewise_service's; this module
configures them with the dunning service's tables and scopes.
"""

from __future__ import annotations

from typing import Annotated

from duewise_service.auth import Principal, TokenAuth
from duewise_service.idempotency import Idempotency, IdempotencyKeys
from fastapi import Depends

from dunning.models import API_TOKEN_TABLE, IDEMPOTENCY_TABLE

SCOPES: dict[str, str] = {
    "policies:write": "create, change and delete policies and assign them to customers",
    "customers:act": "act on a customer: promises to pay, pauses, credit holds",
    "ar:read": "read policies, stages, timelines and dry-run previews",
    "clock:admin": "move the settable clock (never in production)",
    "tokens:admin": "create API tokens",
}
ROLE_SCOPES: dict[str, frozenset[str]] = {
    "admin": frozenset(SCOPES),
    # Other systems and the collector UI, acting for collectors.
    "service": frozenset({"customers:act", "ar:read"}),
    "collector": frozenset({"customers:act", "ar:read"}),
}

AUTH = TokenAuth(API_TOKEN_TABLE, scopes=SCOPES, role_scopes=ROLE_SCOPES)
IDEMPOTENCY_KEYS = IdempotencyKeys(IDEMPOTENCY_TABLE, AUTH.current_principal)

CurrentPrincipal = Annotated[Principal, Depends(AUTH.current_principal)]
CanWritePolicies = Annotated[Principal, Depends(AUTH.require("policies:write"))]
CanActOnCustomers = Annotated[Principal, Depends(AUTH.require("customers:act"))]
CanReadAR = Annotated[Principal, Depends(AUTH.require("ar:read"))]
CanAdminClock = Annotated[Principal, Depends(AUTH.require("clock:admin"))]
IdempotencyDep = Annotated[Idempotency, Depends(IDEMPOTENCY_KEYS.dependency)]
