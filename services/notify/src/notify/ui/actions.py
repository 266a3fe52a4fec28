"""The customer page's other actions, each calling the owning service with the user's own
token and audited (`ui_action`): disputes (invoice), pauses and credit holds (dunning),
manual messages with a preview (notify) and contacts (invoice)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from fastapi import APIRouter, Request
from starlette.datastructures import FormData
from starlette.responses import Response

from notify.ui.accounts import SignedIn
from notify.ui.clients import Api, ServiceError
from notify.ui.messages import CONTACT_ROLES, DISPUTE_OUTCOMES
from notify.ui.pages import style_hashes
from notify.ui.routes import (
    _act,
    _customer_response,
    _idempotency_key,
    _owned_customer,
    _redirect_done,
    to_minor,
)
from notify.ui.views import SAFE_ID, local_today
from notify.ui.web import CurrentUser, api_for, checked_form

router = APIRouter(include_in_schema=False)


def _text(form: FormData, name: str) -> str:
    return str(form.get(name) or "").strip()


async def _done_or_error(
    request: Request,
    api: Api,
    customer_id: str,
    kind: str,
    *,
    service: str,
    path: str,
    body: dict[str, Any],
    form: FormData,
    method: str = "POST",
    extra: dict[str, Any] | None = None,
) -> Response:
    """Act, then back to the customer page with a notice, or the service's sentence."""
    try:
        await _act(
            request,
            api,
            customer_id=customer_id,
            kind=kind,
            service=service,
            path=path,
            body=body,
            idempotency_key=_idempotency_key(form),
            method=method,
        )
    except ServiceError as exc:
        return await _customer_response(
            request, api.user, customer_id, error=exc.sentence, status=exc.status, extra=extra
        )
    return _redirect_done(customer_id, kind)


async def _refuse(
    request: Request, user: SignedIn, customer_id: str, sentence: str, **kw: Any
) -> Response:
    return await _customer_response(request, user, customer_id, error=sentence, status=422, **kw)


async def _customer_invoice(api: Api, customer_id: str, invoice_id: str) -> dict[str, Any] | None:
    """The customer's invoice `invoice_id`, or None (unknown, or another customer's)."""
    if not SAFE_ID.match(invoice_id):
        return None
    invoice = await api.get_or_none("invoice", f"/v1/invoices/{invoice_id}")
    if invoice is None or invoice.get("customer_id") != customer_id:
        return None
    result: dict[str, Any] = invoice
    return result


# --- disputes (invoice service) -------------------------------------------------------------


@router.post("/customers/{customer_id}/disputes")
async def open_dispute(request: Request, customer_id: str, user: CurrentUser) -> Response:
    """Open a dispute on one of the customer's invoices."""
    form = await checked_form(request, user)
    api = api_for(request, user)
    await _owned_customer(request, api, customer_id)
    invoice = await _customer_invoice(api, customer_id, _text(form, "invoice_id"))
    reason = _text(form, "reason")
    if invoice is None:
        return await _refuse(request, user, customer_id, "Choose the invoice in dispute.")
    if not reason:
        return await _refuse(request, user, customer_id, "Say what the customer disputes.")
    return await _done_or_error(
        request,
        api,
        customer_id,
        "dispute_open",
        service="invoice",
        path=f"/v1/invoices/{invoice['id']}/disputes",
        body={"reason": reason[:200], "note": _text(form, "note") or None},
        form=form,
    )


@router.post("/customers/{customer_id}/disputes/{dispute_id}/resolve")
async def resolve_dispute(
    request: Request, customer_id: str, dispute_id: str, user: CurrentUser
) -> Response:
    """Resolve one of the customer's disputes, with an outcome and an optional credit."""
    form = await checked_form(request, user)
    api = api_for(request, user)
    customer = await _owned_customer(request, api, customer_id)
    dispute = (
        await api.get_or_none("invoice", f"/v1/disputes/{dispute_id}")
        if SAFE_ID.match(dispute_id)
        else None
    )
    if dispute is None or dispute.get("customer_id") != customer_id:
        return await _refuse(request, user, customer_id, "There is no such dispute here.")
    outcome = _text(form, "outcome")
    if outcome not in DISPUTE_OUTCOMES:
        return await _refuse(request, user, customer_id, "Choose how the dispute ended.")
    body: dict[str, Any] = {"outcome": outcome, "note": _text(form, "note") or None}
    if credit := _text(form, "credit_amount"):
        try:
            body["credit_amount"] = to_minor(credit, customer["currency"])
        except ValueError as exc:
            return await _refuse(request, user, customer_id, str(exc))
    return await _done_or_error(
        request,
        api,
        customer_id,
        "dispute_resolve",
        service="invoice",
        path=f"/v1/disputes/{dispute_id}/resolve",
        body=body,
        form=form,
    )


# --- pauses and credit holds (dunning service) ----------------------------------------------


@router.post("/customers/{customer_id}/pauses")
async def pause_dunning(request: Request, customer_id: str, user: CurrentUser) -> Response:
    """Stop dunning for the customer (or one invoice) with a reason, until a resume date."""
    form = await checked_form(request, user)
    api = api_for(request, user)
    customer = await _owned_customer(request, api, customer_id)
    reason = _text(form, "reason")
    target = _text(form, "target") or "customer"
    try:
        resume_on = dt.date.fromisoformat(_text(form, "resume_on"))
    except ValueError:
        return await _refuse(request, user, customer_id, "Give the resume date as a date.")
    if resume_on <= local_today(customer.get("timezone") or "UTC"):
        return await _refuse(request, user, customer_id, "Give a resume date after today.")
    if not reason:
        return await _refuse(request, user, customer_id, "Say why dunning is paused.")
    body: dict[str, Any] = {"reason": reason[:500], "resume_on": resume_on.isoformat()}
    if target == "customer":
        body["customer_id"] = customer_id
    else:
        invoice = await _customer_invoice(api, customer_id, target)
        if invoice is None:
            return await _refuse(request, user, customer_id, "Choose what to pause.")
        body["invoice_id"] = invoice["id"]
    return await _done_or_error(
        request,
        api,
        customer_id,
        "pause",
        service="dunning",
        path="/v1/pauses",
        body=body,
        form=form,
    )


@router.post("/customers/{customer_id}/pauses/{pause_id}/resume")
async def resume_dunning(
    request: Request, customer_id: str, pause_id: str, user: CurrentUser
) -> Response:
    """Lift a pause made here for this customer (dunning plans its next steps again)."""
    form = await checked_form(request, user)
    api = api_for(request, user)
    await _owned_customer(request, api, customer_id)
    try:
        in_force = await api.all_pages(
            "dunning", "/v1/pauses", {"customer_id": customer_id, "active": "true"}
        )
    except ServiceError as exc:
        return await _refuse(request, user, customer_id, exc.sentence)
    if not any(p["id"] == pause_id and p["kind"] == "manual" for p in in_force):
        return await _refuse(request, user, customer_id, "There is no such pause here.")
    return await _done_or_error(
        request,
        api,
        customer_id,
        "resume",
        service="dunning",
        path=f"/v1/pauses/{pause_id}",
        body={"pause_id": pause_id},
        form=form,
        method="DELETE",
    )


@router.post("/customers/{customer_id}/credit-hold")
async def place_hold(request: Request, customer_id: str, user: CurrentUser) -> Response:
    return await _hold(request, customer_id, user, release=False)


@router.post("/customers/{customer_id}/credit-hold/release")
async def release_hold(request: Request, customer_id: str, user: CurrentUser) -> Response:
    return await _hold(request, customer_id, user, release=True)


async def _hold(request: Request, customer_id: str, user: SignedIn, *, release: bool) -> Response:
    """Place or release the customer's credit hold, with a reason."""
    form = await checked_form(request, user)
    api = api_for(request, user)
    await _owned_customer(request, api, customer_id)
    reason = _text(form, "reason")
    if not reason:
        return await _refuse(request, user, customer_id, "Give a reason for the credit hold.")
    path = f"/v1/customers/{customer_id}/credit-hold" + ("/release" if release else "")
    return await _done_or_error(
        request,
        api,
        customer_id,
        "hold_release" if release else "hold_place",
        service="dunning",
        path=path,
        body={"reason": reason[:500]},
        form=form,
    )


# --- manual messages (notify) ---------------------------------------------------------------


def _message_form(form: FormData) -> dict[str, Any]:
    return {
        "template": _text(form, "template"),
        "channel": "sms" if _text(form, "channel") == "sms" else "email",
        "subject": _text(form, "subject"),
        "body": str(form.get("body") or "").strip(),
        "invoice_ids": [str(v) for v in form.getlist("invoice_ids") if SAFE_ID.match(str(v))],
        "contact_ids": [str(v) for v in form.getlist("contact_ids") if SAFE_ID.match(str(v))],
    }


@router.post("/customers/{customer_id}/messages/preview")
async def preview_message(request: Request, customer_id: str, user: CurrentUser) -> Response:
    """Render the message as the customer would receive it (notify's previews), unsent."""
    form = await checked_form(request, user)
    api = api_for(request, user)
    await _owned_customer(request, api, customer_id)
    message = _message_form(form)
    if not message["body"]:
        return await _refuse(
            request, user, customer_id, "Write the message first.", extra={"message": message}
        )
    try:
        _, preview = await api.post(
            "notify",
            "/v1/previews",
            {
                "kind": "manual",
                "channel": message["channel"],
                "customer_id": customer_id,
                "invoice_ids": message["invoice_ids"],
                "extra": {"subject": message["subject"], "body": message["body"]},
            },
        )
    except ServiceError as exc:
        return await _customer_response(
            request,
            user,
            customer_id,
            error=exc.sentence,
            status=exc.status,
            extra={"message": message},
        )
    return await _customer_response(
        request,
        user,
        customer_id,
        extra={"message": message, "preview": preview},
        style_hashes=style_hashes(preview.get("html")),
    )


@router.post("/customers/{customer_id}/messages")
async def send_message(request: Request, customer_id: str, user: CurrentUser) -> Response:
    """Queue the previewed message with notify (its sender delivers it)."""
    form = await checked_form(request, user)
    api = api_for(request, user)
    await _owned_customer(request, api, customer_id)
    message = _message_form(form)
    if not message["body"]:
        return await _refuse(
            request, user, customer_id, "Write the message first.", extra={"message": message}
        )
    body = {k: v for k, v in message.items() if k != "template"} | {"customer_id": customer_id}
    return await _done_or_error(
        request,
        api,
        customer_id,
        "message",
        service="notify",
        path="/v1/messages",
        body=body,
        form=form,
        extra={"message": message},
    )


# --- contacts (invoice service) -------------------------------------------------------------

CONTACT_FIELDS = ("name", "email", "phone")


def contacts_from(form: FormData) -> list[dict[str, Any]]:
    """The contact rows of the form (`contact-<n>-<field>`), blank rows dropped."""
    contacts = []
    for n in range(51):
        row = {f: _text(form, f"contact-{n}-{f}") for f in CONTACT_FIELDS}
        if not any(row.values()):
            continue
        role = _text(form, f"contact-{n}-role")
        contacts.append(
            {
                "name": row["name"],
                "email": row["email"] or None,
                "phone": row["phone"] or None,
                "role": role if role in CONTACT_ROLES else "other",
                "undeliverable": bool(form.get(f"contact-{n}-undeliverable")),
            }
        )
    return contacts


@router.post("/customers/{customer_id}/contacts")
async def save_contacts(request: Request, customer_id: str, user: CurrentUser) -> Response:
    """Replace the customer's contacts (fix the billing contact's address, or who it is)."""
    form = await checked_form(request, user)
    api = api_for(request, user)
    await _owned_customer(request, api, customer_id)
    contacts = contacts_from(form)
    if not any(c["role"] == "billing" for c in contacts):
        return await _refuse(request, user, customer_id, "Keep one contact as the billing contact.")
    return await _done_or_error(
        request,
        api,
        customer_id,
        "contacts",
        service="invoice",
        path=f"/v1/customers/{customer_id}/contacts",
        body={"contacts": contacts},
        form=form,
        method="PUT",
    )
