"""The collector UI's work pages: the worklist, the customer page, and its actions."""

from __future__ import annotations

import contextlib
import datetime as dt
import re
import uuid
from decimal import Decimal, InvalidOperation
from typing import Any, get_args
from urllib.parse import quote, urlencode

from duewise_events.catalogue import ResponseReason
from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse
from sqlalchemy import insert, select
from starlette.datastructures import FormData
from starlette.responses import Response

from notify.models import new_id
from notify.render.formatting import currency_precision
from notify.ui.accounts import SignedIn
from notify.ui.clients import Api, ServiceError
from notify.ui.customer import customer_page
from notify.ui.customer_parts import copy_here
from notify.ui.messages import (
    CONTACT_ROLES,
    DISPUTE_OUTCOMES,
    MESSAGE_TEMPLATES,
    message_defaults,
)
from notify.ui.pages import render
from notify.ui.tables import UI_ACTION, UI_USER
from notify.ui.views import SAFE_ID, NotYours, may_see
from notify.ui.web import CurrentUser, PageError, api_for, checked_form, db, ui_state
from notify.ui.worklist import worklist

REASONS: tuple[str, ...] = get_args(ResponseReason)
IDEMPOTENCY_KEY = re.compile(r"^[A-Za-z0-9-]{8,100}$")

router = APIRouter(include_in_schema=False)


# --- the worklist ---------------------------------------------------------------------------


@router.get("/")
async def worklist_page(
    request: Request,
    user: CurrentUser,
    owner: str | None = None,
    band: str | None = None,
    stage: str | None = None,
    currency: str | None = None,
    cursor: str | None = None,
) -> Response:
    """The user's customers in working order, a page at a time (admins: everyone's, or one
    owner's)."""
    chosen_owner = (owner or None) if user.is_admin else user.user_name
    async with db(request)() as session:
        try:
            work = await worklist(
                api_for(request, user),
                session,
                owner=chosen_owner,
                band=band or None,
                stage=stage or None,
                currency=(currency or "").upper() or None,
                cursor=cursor or None,
                budget_s=_budget_s(request),
            )
        except ServiceError as exc:
            raise PageError(exc.sentence, exc.status, user) from exc
        owners = (
            list((await session.scalars(select(UI_USER.c.user_name).order_by("user_name"))).all())
            if user.is_admin
            else []
        )
    return render(
        request,
        "worklist.html",
        {
            "user": user,
            "rows": work.rows,
            "problems": work.problems,
            "next_cursor": work.next_cursor,
            "first_page": not cursor,
            "owners": owners,
            "filters": {
                "owner": chosen_owner or "",
                "band": band or "",
                "stage": stage or "",
                "currency": currency or "",
            },
        },
    )


# --- the customer ---------------------------------------------------------------------------

NOTICES = {
    "promise": "Promise to pay recorded: dunning pauses its invoices until the promised date.",
    "response": "Response logged.",
    "dispute_open": "Dispute opened: no reminders for that invoice until it is resolved.",
    "dispute_resolve": "Dispute resolved: the invoice is back in dunning if it is unpaid.",
    "pause": "Dunning paused.",
    "resume": "Dunning resumed: its next steps are planned again.",
    "hold_place": "Credit hold placed.",
    "hold_release": "Credit hold released.",
    "message": "Message queued: it goes out with the next sender run.",
    "contacts": "Contacts saved.",
}


async def _customer_response(
    request: Request,
    user: SignedIn,
    customer_id: str,
    *,
    notice: str | None = None,
    error: str | None = None,
    status: int = 200,
    extra: dict[str, Any] | None = None,
    style_hashes: tuple[str, ...] = (),
) -> Response:
    async with db(request)() as session:
        try:
            page = await customer_page(
                api_for(request, user), session, customer_id, _budget_s(request)
            )
        except NotYours as exc:
            raise PageError("There is no such customer in your portfolio.", 404, user) from exc
        except ServiceError as exc:
            raise PageError(exc.sentence, exc.status, user) from exc
    currency = page.customer["currency"]
    default_amount = to_major(sum(int(i["balance"]) for i in page.open_invoices), currency)
    return render(
        request,
        "customer.html",
        {
            "user": user,
            "page": page,
            "c": page.customer,
            "notice": notice,
            "error": error,
            "reasons": REASONS,
            "default_amount": default_amount,
            "default_date": (page.today + dt.timedelta(days=7)).isoformat(),
            "idempotency_key": str(uuid.uuid4()),
            "templates": MESSAGE_TEMPLATES,
            "outcomes": DISPUTE_OUTCOMES,
            "contact_roles": CONTACT_ROLES,
            "message": message_defaults(page, user, request.query_params.get("template")),
            **(extra or {}),
        },
        status_code=status,
        style_hashes=style_hashes,
    )


@router.get("/customers/{customer_id}")
async def customer_view(
    request: Request, customer_id: str, user: CurrentUser, done: str | None = None
) -> Response:
    return await _customer_response(request, user, customer_id, notice=NOTICES.get(done or ""))


def to_major(amount_minor: int, currency: str) -> str:
    """Minor units as the text a person types: 120050 USD → "1200.50"."""
    return str(Decimal(amount_minor).scaleb(-currency_precision(currency)))


def to_minor(text: str, currency: str) -> int:
    """A typed amount in minor units; ValueError with the sentence to show."""
    digits = currency_precision(currency)
    try:
        amount = Decimal(text.strip().replace(",", ""))
    except InvalidOperation as exc:
        raise ValueError("Give the amount as a number, such as 1200.50.") from exc
    minor = amount.scaleb(digits)
    if not amount.is_finite() or minor != minor.to_integral_value() or minor <= 0:
        raise ValueError(f"Give a positive amount with at most {digits} decimals for {currency}.")
    return int(minor)


def _budget_s(request: Request) -> float:
    return ui_state(request).ui.page_call_budget_s


async def _owned_customer(request: Request, api: Api, customer_id: str) -> dict[str, Any]:
    """The customer, if it is the user's, before an action: the invoice service's record, or
    notify's copy when that service does not answer within the budget (so that logging a
    response or pausing dunning does not wait on a saturated invoice service)."""
    if not SAFE_ID.match(customer_id):
        raise PageError("There is no such customer in your portfolio.", 404, api.user)
    try:
        customer = await api.get_or_none(
            "invoice", f"/v1/customers/{customer_id}", None, _budget_s(request)
        )
    except ServiceError as exc:
        async with db(request)() as session:
            customer = await copy_here(session, customer_id, exc)
    if customer is None or not may_see(api.user, customer):
        raise PageError("There is no such customer in your portfolio.", 404, api.user)
    result: dict[str, Any] = customer
    return result


async def _act(
    request: Request,
    api: Api,
    *,
    customer_id: str,
    kind: str,
    service: str,
    path: str,
    body: dict[str, Any],
    idempotency_key: str | None,
    method: str = "POST",
) -> Any:
    """Call the owning service and write the audit row, whatever its answer; the answer."""
    status, result = 0, None
    try:
        status, result = await api.write(
            service, method, path, None if method == "DELETE" else body, idempotency_key
        )
        return result
    except ServiceError as exc:
        status, result = exc.status, {"error": exc.sentence}
        raise
    finally:
        async with db(request)() as session, session.begin():
            await session.execute(
                insert(UI_ACTION).values(
                    id=new_id("act"),
                    user_name=api.user.user_name,
                    subject_kind="customer",
                    subject_id=customer_id,
                    customer_id=customer_id,
                    kind=kind,
                    service=service,
                    request=body,
                    status=status,
                    result=result,
                )
            )


def _idempotency_key(form: FormData) -> str | None:
    """The form's key (set when the page was rendered: a double submit is sent once)."""
    key = str(form.get("idempotency_key") or "")
    return key if IDEMPOTENCY_KEY.match(key) else None


def _redirect_done(customer_id: str, done: str) -> Response:
    return RedirectResponse(
        f"/customers/{quote(customer_id, safe='')}?{urlencode({'done': done})}", status_code=303
    )


@router.post("/customers/{customer_id}/promises")
async def record_promise(request: Request, customer_id: str, user: CurrentUser) -> Response:
    """Record a promise to pay with dunning (which pauses the promised invoices)."""
    form = await checked_form(request, user)
    api = api_for(request, user)
    customer = await _owned_customer(request, api, customer_id)
    invoice_ids = [str(v) for v in form.getlist("invoice_ids")]
    try:
        amount = to_minor(str(form.get("amount", "")), customer["currency"])
        promised = dt.date.fromisoformat(str(form.get("promised_date", "")))
        if not invoice_ids:
            raise ValueError("Choose the invoices the customer promised to pay.")
    except ValueError as exc:
        sentence = str(exc) if str(exc).endswith(".") else "Give the promised date as a date."
        return await _customer_response(request, user, customer_id, error=sentence, status=422)
    body = {
        "customer_id": customer_id,
        "invoice_ids": invoice_ids,
        "amount": amount,
        "promised_date": promised.isoformat(),
    }
    key = _idempotency_key(form)
    try:
        await _act(
            request,
            api,
            customer_id=customer_id,
            kind="promise",
            service="dunning",
            path="/v1/promises",
            body=body,
            idempotency_key=key,
        )
    except ServiceError as exc:
        return await _customer_response(
            request, user, customer_id, error=exc.sentence, status=exc.status
        )
    # What the customer said is a response too: logged with notify, it reaches risk, whose
    # worklist then works the customer after the others until the promise is kept or broken.
    note = f"Promised {to_major(amount, customer['currency'])} {customer['currency']} by {promised}"
    with contextlib.suppress(ServiceError):  # the promise stands; only the order would lag
        await _act(
            request,
            api,
            customer_id=customer_id,
            kind="response",
            service="notify",
            path="/v1/responses",
            body={"customer_id": customer_id, "reason": "promise", "note": note},
            idempotency_key=f"{key}-response" if key else None,
        )
    return _redirect_done(customer_id, "promise")


@router.post("/customers/{customer_id}/responses")
async def log_response(request: Request, customer_id: str, user: CurrentUser) -> Response:
    """Log what the customer said (notify's responses), with a reason code and a note."""
    form = await checked_form(request, user)
    api = api_for(request, user)
    await _owned_customer(request, api, customer_id)
    reason = str(form.get("reason", ""))
    note = str(form.get("note", "")).strip() or None
    if reason not in REASONS:
        return await _customer_response(
            request, user, customer_id, error="Choose a reason for the response.", status=422
        )
    body: dict[str, Any] = {"customer_id": customer_id, "reason": reason, "note": note}
    try:
        await _act(
            request,
            api,
            customer_id=customer_id,
            kind="response",
            service="notify",
            path="/v1/responses",
            body=body,
            idempotency_key=_idempotency_key(form),
        )
    except ServiceError as exc:
        return await _customer_response(
            request, user, customer_id, error=exc.sentence, status=exc.status
        )
    return _redirect_done(customer_id, "response")
