"""HTTP routes, all under /v1 (health at the root): parse → service call → schema."""

from fastapi import APIRouter

from dunning.api import admin, customers, health, overview, pauses, policies, stages, timelines
from dunning.auth import AUTH

v1 = APIRouter(prefix="/v1")
for _module in (policies, timelines, customers, overview, pauses, stages, admin):
    v1.include_router(_module.router)
v1.include_router(AUTH.router(admin_scope="tokens:admin"))

__all__ = ["health", "v1"]
