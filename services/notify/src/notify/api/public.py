"""The pages a customer reaches from an email: reply ("already paid", "didn't receive it",
"dispute", "need more time") and unsubscribe from optional messages.

No sign-in: the signed token in the link is the authority, and it names one message and
one customer. GET never changes anything (mail scanners open links to check them); the
form's POST does. Unsubscribe also takes RFC 8058 one-click POSTs from mail clients.
"""

from __future__ import annotations

import html
from typing import Annotated

from duewise_service.db import SessionDep
from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse
from sqlalchemy.dialects.postgresql import insert
from sqlmodel import col

from notify.compose import Links
from notify.models import Message, OptOut
from notify.service.responses import log_response

router = APIRouter(tags=["customer pages"], include_in_schema=False)

LABELS = {
    "already_paid": "I have already paid",
    "not_received": "I did not receive the invoice",
    "dispute": "I dispute this invoice",
    "cash_flow": "I need more time to pay",
    "wrong_contact": "I am not the right person for invoices",
    "other": "Something else",
}


def _page(title: str, body: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        "<meta name=viewport content='width=device-width, initial-scale=1'>"
        f"<title>{html.escape(title)}</title>"
        "<style>body{font-family:system-ui,sans-serif;max-width:34rem;margin:3rem auto;"
        "padding:0 1rem;line-height:1.5}label{display:block;margin:.4rem 0}"
        "textarea{width:100%;min-height:6rem}button{margin-top:1rem;padding:.5rem 1rem}"
        "</style></head>"
        f"<body><h1>{html.escape(title)}</h1>{body}</body></html>",
        status_code=status,
    )


def _links(request: Request) -> Links:
    links: Links = request.app.state.links
    return links


def _invalid() -> HTMLResponse:
    return _page(
        "This link is not valid",
        "<p>The link may have been cut when it was copied. Please reply to the email "
        "instead, and we will get back to you.</p>",
        status=404,
    )


@router.get("/r/{token}")
async def reply_form(token: str, request: Request, reason: str | None = None) -> HTMLResponse:
    if _links(request).reply_token(token) is None:
        return _invalid()
    options = "".join(
        f"<label><input type=radio name=reason value={key} required"
        f"{' checked' if key == reason else ''}> {html.escape(label)}</label>"
        for key, label in LABELS.items()
    )
    return _page(
        "Tell us about this reminder",
        f"<form method=post action='/r/{html.escape(token)}'>{options}"
        "<label>Anything we should know? <textarea name=note maxlength=4000></textarea></label>"
        "<button type=submit>Send</button></form>",
    )


@router.post("/r/{token}")
async def reply_submit(
    token: str,
    request: Request,
    session: SessionDep,
    reason: Annotated[str, Form()],
    note: Annotated[str | None, Form(max_length=4000)] = None,
) -> HTMLResponse:
    found = _links(request).reply_token(token)
    if found is None:
        return _invalid()
    if reason not in LABELS:
        return _page("Please choose an answer", "<p>Go back and pick one of the options.</p>", 422)
    message_id, customer_id = found
    async with session.begin():
        message = await session.get(Message, message_id)
        await log_response(
            session,
            customer_id=customer_id,
            reason=reason,
            source="reply_link",
            note=note or None,
            message_id=message_id,
            invoice_ids=list(message.invoice_ids) if message else [],
        )
    return _page(
        "Thank you",
        "<p>Your answer reached our accounts team. Someone will be in touch if anything "
        "else is needed.</p>",
    )


@router.get("/u/{token}")
async def unsubscribe_form(token: str, request: Request) -> HTMLResponse:
    if _links(request).unsubscribe_token(token) is None:
        return _invalid()
    return _page(
        "Unsubscribe",
        "<p>Stop thank-you and good-standing messages? Invoices and payment reminders "
        "will still be sent.</p>"
        f"<form method=post action='/u/{html.escape(token)}'>"
        "<button type=submit>Unsubscribe</button></form>",
    )


@router.post("/u/{token}")
async def unsubscribe(token: str, request: Request, session: SessionDep) -> HTMLResponse:
    found = _links(request).unsubscribe_token(token)
    if found is None:
        return _invalid()
    contact_id, customer_id = found
    async with session.begin():
        await session.execute(
            insert(OptOut)
            .values(contact_id=contact_id, customer_id=customer_id)
            .on_conflict_do_nothing(index_elements=[col(OptOut.contact_id)])
        )
    return _page("You are unsubscribed", "<p>You will not receive these messages again.</p>")
