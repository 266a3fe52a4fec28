"""Who may read what in the risk service: its scopes, roles and the route dependencies.

The mechanics (bearer tokens, cache) are duewise_service's; this module configures them with
the risk service's table and scopes. The risk API only reads: no Idempotency-Key is needed.
"""

from __future__ import annotations

from typing import Annotated

from duewise_service.auth import Principal, TokenAuth
from fastapi import Depends

from risk.models import API_TOKEN_TABLE

SCOPES: dict[str, str] = {
    "risk:read": "read profiles, scores and signals",
    "analytics:read": "read portfolio analytics (DSO, CEI, aging, at-risk, step recovery)",
    "tokens:admin": "create API tokens",
}
_READ = frozenset({"risk:read", "analytics:read"})
ROLE_SCOPES: dict[str, frozenset[str]] = {
    "admin": frozenset(SCOPES),
    "service": _READ,  # dunning (bands), notify and the collector UI
    "collector": _READ,
}

AUTH = TokenAuth(API_TOKEN_TABLE, scopes=SCOPES, role_scopes=ROLE_SCOPES)

CanReadRisk = Annotated[Principal, Depends(AUTH.require("risk:read"))]
CanReadAnalytics = Annotated[Principal, Depends(AUTH.require("analytics:read"))]
