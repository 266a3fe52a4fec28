"""Who may do what in the notify service: scopes over the shared bearer-token scheme."""

from __future__ import annotations

from typing import Annotated

from duewise_service.auth import Principal, TokenAuth
from duewise_service.idempotency import Idempotency, IdempotencyKeys
from fastapi import Depends

from notify.models import API_TOKEN_TABLE, IDEMPOTENCY_TABLE

SCOPES: dict[str, str] = {
    "messages:read": "read the delivery log, templates and responses",
    "messages:write": "send manual messages, preview templates, log responses",
    "webhooks:admin": "register and remove webhook endpoints",
    "bounces:write": "report bounces (delivery status notifications)",
    "tokens:admin": "create API tokens",
}
ROLE_SCOPES: dict[str, frozenset[str]] = {
    "admin": frozenset(SCOPES),
    "service": frozenset({"messages:read", "bounces:write"}),
    "collector": frozenset({"messages:read", "messages:write"}),
}

AUTH = TokenAuth(API_TOKEN_TABLE, scopes=SCOPES, role_scopes=ROLE_SCOPES)
IDEMPOTENCY = IdempotencyKeys(IDEMPOTENCY_TABLE, AUTH.current_principal)

CanRead = Annotated[Principal, Depends(AUTH.require("messages:read"))]
CanWrite = Annotated[Principal, Depends(AUTH.require("messages:write"))]
CanAdminWebhooks = Annotated[Principal, Depends(AUTH.require("webhooks:admin"))]
CanReportBounces = Annotated[Principal, Depends(AUTH.require("bounces:write"))]
IdempotencyDep = Annotated[Idempotency, Depends(IDEMPOTENCY.dependency)]
