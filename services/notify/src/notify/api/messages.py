"""The delivery log, manual messages, template previews and the template listing."""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from duewise_service.db import SessionDep
from duewise_service.problems import DomainError, not_found
from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlmodel import col, select

from notify.api.paging import PageOut, check_limit, decode_cursor, next_cursor
from notify.auth import CanRead, CanWrite, IdempotencyDep
from notify.compose import context_for, customer_view, invoice_view, local_today
from notify.models import (
    MESSAGE_STATUSES,
    CustomerProjection,
    DeliveryAttempt,
    InvoiceProjection,
    Message,
    new_id,
    utcnow,
)
from notify.render import MessageContext, Renderer, TemplateError, sample_context
from notify.service.enqueue import enqueue

router = APIRouter(tags=["messages"])


class MessageSummary(BaseModel):
    id: str
    customer_id: str | None
    kind: str
    channel: str
    tone: str | None
    status: str
    reason: str | None
    cause_type: str
    cause_id: str
    step_key: str | None
    invoice_ids: list[str]
    attempts: int
    subject: str | None
    created_at: dt.datetime
    sent_at: dt.datetime | None
    not_before: dt.datetime


class AttemptOut(BaseModel):
    attempt: int
    outcome: str
    response: str | None
    at: dt.datetime


class MessageDetail(MessageSummary):
    recipients: list[dict[str, Any]]
    body_text: str | None
    body_html: str | None
    header_message_id: str | None
    provider_response: str | None
    data: dict[str, Any]
    created_by: str | None
    delivery_attempts: list[AttemptOut]


def _summary(m: Message) -> MessageSummary:
    return MessageSummary.model_validate(m, from_attributes=True)


@router.get("/messages", response_model=PageOut[MessageSummary])
async def list_messages(
    session: SessionDep,
    _: CanRead,
    customer_id: str | None = None,
    status: str | None = None,
    kind: str | None = None,
    channel: str | None = None,
    cause_id: str | None = None,
    limit: int = 50,
    cursor: str | None = None,
) -> PageOut[MessageSummary]:
    """The delivery log, newest first, filtered by customer, status, kind, channel or cause."""
    check_limit(limit)
    if status is not None and status not in MESSAGE_STATUSES:
        raise DomainError(
            422, "Invalid status", f"status: one of {list(MESSAGE_STATUSES)}", "status"
        )
    stmt = select(Message).order_by(col(Message.id).desc()).limit(limit + 1)
    for column, value in (
        (Message.customer_id, customer_id),
        (Message.status, status),
        (Message.kind, kind),
        (Message.channel, channel),
        (Message.cause_id, cause_id),
    ):
        if value is not None:
            stmt = stmt.where(col(column) == value)
    if (after := decode_cursor(cursor)) is not None:
        stmt = stmt.where(col(Message.id) < after)
    async with session.begin():
        rows = list((await session.scalars(stmt)).all())
    return PageOut(
        items=[_summary(m) for m in rows[:limit]],
        next_cursor=next_cursor([m.id for m in rows], limit),
    )


@router.get("/messages/{message_id}", response_model=MessageDetail)
async def get_message(message_id: str, session: SessionDep, _: CanRead) -> MessageDetail:
    """One message: its cause, recipients, rendered content, attempts and provider answers."""
    async with session.begin():
        message = await session.get(Message, message_id)
        if message is None:
            raise not_found("message", message_id)
        attempts = (
            await session.scalars(
                select(DeliveryAttempt)
                .where(col(DeliveryAttempt.message_id) == message_id)
                .order_by(col(DeliveryAttempt.attempt))
            )
        ).all()
    return MessageDetail.model_validate(
        {
            **message.model_dump(),
            "delivery_attempts": [
                AttemptOut.model_validate(a, from_attributes=True) for a in attempts
            ],
        }
    )


class ManualMessage(BaseModel):
    """A message a collector writes: the subject and body go inside the usual layout."""

    model_config = ConfigDict(extra="forbid")

    customer_id: str = Field(min_length=1)
    channel: Literal["email", "sms"] = "email"
    subject: str = Field(default="", max_length=300)
    body: str = Field(min_length=1, max_length=20_000)
    contact_ids: list[str] = Field(default_factory=list, max_length=50)
    invoice_ids: list[str] = Field(default_factory=list, max_length=200)


@router.post("/messages", status_code=202, response_model=MessageSummary)
async def send_manual(
    body: ManualMessage, session: SessionDep, principal: CanWrite, idem: IdempotencyDep
) -> JSONResponse:
    """Queue a collector's message to a customer (202: the sender delivers it)."""
    if body.channel == "email" and not body.subject.strip():
        raise DomainError(422, "Subject required", "subject: an email needs a subject", "subject")
    async with session.begin():

        async def produce() -> MessageSummary:
            customer = await session.get(CustomerProjection, body.customer_id)
            if customer is None:
                raise DomainError(
                    422,
                    "Unknown customer",
                    f"customer_id: {body.customer_id} is not known",
                    "customer_id",
                )
            known = {c["id"] for c in customer.contacts}
            if unknown := sorted(set(body.contact_ids) - known):
                raise DomainError(
                    422,
                    "Unknown contact",
                    f"contact_ids: {unknown} are not this customer's",
                    "contact_ids",
                )
            cause = new_id("man")
            message_id = await enqueue(
                session,
                key=f"manual:{cause}",
                kind="manual",
                channel=body.channel,
                cause_type="manual",
                cause_id=cause,
                customer_id=body.customer_id,
                invoice_ids=body.invoice_ids,
                data={"subject": body.subject, "body": body.body, "contact_ids": body.contact_ids},
                created_by=principal.name,
            )
            message = await session.get(Message, message_id)
            assert message is not None
            return _summary(message)

        return await idem.run(session, 202, produce)


class PreviewRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: Literal[
        "invoice", "reminder", "thank_you", "good_standing", "credit_hold", "alert", "manual"
    ]
    tone: Literal["friendly", "neutral", "firm", "final"] | None = None
    channel: Literal["email", "sms"] = "email"
    locale: str | None = Field(default=None, description="default: the customer's, else en-US")
    customer_id: str | None = Field(default=None, description="render with this customer's data")
    invoice_ids: list[str] = Field(default_factory=list, max_length=50)
    extra: dict[str, Any] = Field(default_factory=dict)


class PreviewOut(BaseModel):
    subject: str
    text: str
    html: str | None
    sample: bool = Field(description="true when sample data stood in for a real customer")


@router.post("/previews", response_model=PreviewOut)
async def preview(
    body: PreviewRequest, request: Request, session: SessionDep, _: CanRead
) -> PreviewOut:
    """Render any template with sample data, or with a real customer's and invoices' data."""
    renderer: Renderer = request.app.state.renderer
    ctx: MessageContext
    if body.customer_id is None:
        ctx = sample_context(body.kind, body.tone, body.locale or "en-US", body.channel)
        if body.extra:
            ctx = ctx.model_copy(update={"extra": {**ctx.extra, **body.extra}})
    else:
        async with session.begin():
            customer = await session.get(CustomerProjection, body.customer_id)
            if customer is None:
                raise not_found("customer", body.customer_id)
            invoices = (
                (
                    await session.scalars(
                        select(InvoiceProjection).where(
                            col(InvoiceProjection.id).in_(body.invoice_ids)
                        )
                    )
                ).all()
                if body.invoice_ids
                else []
            )
        if missing := sorted(set(body.invoice_ids) - {i.id for i in invoices}):
            raise DomainError(
                422, "Unknown invoice", f"invoice_ids: {missing} are not known", "invoice_ids"
            )
        if body.locale:
            customer.locale = body.locale
        today = local_today(customer, utcnow())
        sample = sample_context(body.kind, body.tone, customer.locale, body.channel)
        message = Message(
            idempotency_key="preview",
            kind=body.kind,
            channel=body.channel,
            tone=body.tone or ("neutral" if body.kind == "reminder" else None),
            cause_type="preview",
            cause_id="preview",
            data={**sample.extra, **body.extra},
        )
        ctx = context_for(
            message,
            customer,
            [invoice_view(i, today) for i in invoices],
            channel=body.channel,
            company_name=request.app.state.settings.company_name,
            reply_urls=sample.reply_urls if body.kind == "reminder" else None,
            extra={**sample.extra, **body.extra},
        )
        ctx = ctx.model_copy(update={"customer": customer_view(customer)})
    try:
        rendered = renderer.render(ctx)
    except TemplateError as exc:
        raise DomainError(422, "Template failed", str(exc), "kind", code="template-error") from exc
    return PreviewOut(
        subject=rendered.subject,
        text=rendered.text,
        html=rendered.html,
        sample=body.customer_id is None,
    )


class TemplateOut(BaseModel):
    kind: str
    tone: str | None
    channel: str
    locale: str
    source: str
    parts: list[str]


@router.get("/templates", response_model=list[TemplateOut])
async def list_templates(
    request: Request, _: CanRead, kind: str | None = Query(default=None)
) -> list[TemplateOut]:
    """Every template set, packaged or overridden from NOTIFY_TEMPLATE_DIR."""
    renderer: Renderer = request.app.state.renderer
    return [
        TemplateOut(
            kind=t.kind,
            tone=t.tone,
            channel=t.channel,
            locale=t.locale,
            source=t.source,
            parts=list(t.parts),
        )
        for t in renderer.templates()
        if kind is None or t.kind == kind
    ]
