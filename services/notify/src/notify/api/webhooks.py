"""Webhook endpoints: other internal systems subscribe to duewise's events over HTTP.

Deliveries are signed per Standard Webhooks (webhook-id, webhook-timestamp,
webhook-signature); the secret is shown once, when the endpoint is created. Targets on
private or loopback addresses are refused unless NOTIFY_WEBHOOK_ALLOW_PRIVATE is set.
"""

from __future__ import annotations

import datetime as dt

from duewise_events.catalogue import BY_TYPE
from duewise_service.db import SessionDep
from duewise_service.problems import DomainError, not_found
from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field
from sqlmodel import col, select

from notify.auth import CanAdminWebhooks
from notify.channels.webhooks import TargetRefused, check_target, new_secret
from notify.models import WebhookEndpoint, utcnow

router = APIRouter(tags=["webhooks"])


class EndpointIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str = Field(min_length=8, max_length=2000)
    description: str | None = Field(default=None, max_length=500)
    event_types: list[str] = Field(
        default_factory=list, max_length=100, description="empty: every event type"
    )


class EndpointOut(BaseModel):
    id: str
    url: str
    description: str | None
    event_types: list[str]
    enabled: bool
    disabled_reason: str | None
    created_at: dt.datetime


class EndpointCreated(EndpointOut):
    secret: str = Field(description="shown once: verify deliveries with it")


@router.post("/webhook-endpoints", status_code=201, response_model=EndpointCreated)
async def create_endpoint(
    body: EndpointIn, request: Request, session: SessionDep, _: CanAdminWebhooks
) -> EndpointCreated:
    if unknown := sorted(set(body.event_types) - set(BY_TYPE)):
        raise DomainError(
            422,
            "Unknown event type",
            f"event_types: {unknown} are not in the catalogue",
            "event_types",
        )
    try:
        await check_target(body.url, allow_private=request.app.state.settings.webhook_allow_private)
    except TargetRefused as exc:
        raise DomainError(
            422, "Target refused", f"url: {exc}", "url", code="target-refused"
        ) from exc
    endpoint = WebhookEndpoint(
        url=body.url,
        description=body.description,
        secret=new_secret(),
        event_types=body.event_types,
    )
    async with session.begin():
        session.add(endpoint)
        await session.flush()
        return EndpointCreated.model_validate(endpoint, from_attributes=True)


@router.get("/webhook-endpoints", response_model=list[EndpointOut])
async def list_endpoints(session: SessionDep, _: CanAdminWebhooks) -> list[EndpointOut]:
    async with session.begin():
        rows = (
            await session.scalars(select(WebhookEndpoint).order_by(col(WebhookEndpoint.id)))
        ).all()
    return [EndpointOut.model_validate(r, from_attributes=True) for r in rows]


@router.delete("/webhook-endpoints/{endpoint_id}", status_code=204)
async def delete_endpoint(endpoint_id: str, session: SessionDep, _: CanAdminWebhooks) -> None:
    """Disable the endpoint (its delivery log stays); nothing more is sent to it."""
    async with session.begin():
        endpoint = await session.get(WebhookEndpoint, endpoint_id, with_for_update=True)
        if endpoint is None:
            raise not_found("webhook endpoint", endpoint_id)
        endpoint.enabled, endpoint.disabled_reason = False, "deleted"
        endpoint.updated_at = utcnow()
