"""HTTP routes, all under /v1 (health at the root): parse → service call → schema."""

from fastapi import APIRouter

from dunning.api import admin, customers, health, policies, timelines

v1 = APIRouter(prefix="/v1")
for _module in (policies, timelines, customers, admin):
    v1.include_router(_module.router)

__all__ = ["health", "v1"]
