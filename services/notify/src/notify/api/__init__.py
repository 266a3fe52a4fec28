"""HTTP routes: the API under /v1, health at the root, and the customers' reply and
unsubscribe pages (public, authorised by their signed link)."""

from fastapi import APIRouter

from notify.api import bounces, health, messages, public, responses, webhooks
from notify.auth import AUTH

v1 = APIRouter(prefix="/v1")
for _module in (messages, responses, webhooks, bounces):
    v1.include_router(_module.router)
v1.include_router(AUTH.router())

__all__ = ["health", "public", "v1"]
