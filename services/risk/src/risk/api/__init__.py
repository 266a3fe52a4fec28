"""HTTP routes, all under /v1 (health at the root). The risk API only reads."""

from fastapi import APIRouter

from risk.api import analytics, customers, health, portfolio, worklist
from risk.auth import AUTH

v1 = APIRouter(prefix="/v1")
for _module in (customers, portfolio, analytics, worklist):
    v1.include_router(_module.router)
v1.include_router(AUTH.router())  # POST /v1/tokens (admins), GET /v1/tokens/me

__all__ = ["health", "v1"]
