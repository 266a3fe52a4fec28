"""Dunning policies (admins only): the list, one policy's spec edited as JSON with the
dunning service's validation shown field by field, and the dry-run timeline the edited spec
would give a chosen invoice (`POST /v1/policies/preview`, which changes nothing)."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse
from sqlalchemy import insert
from starlette.datastructures import FormData
from starlette.responses import Response

from notify.models import new_id
from notify.ui.accounts import SignedIn
from notify.ui.clients import Api, ServiceError
from notify.ui.pages import render
from notify.ui.tables import UI_ACTION
from notify.ui.views import SAFE_ID
from notify.ui.web import CurrentUser, PageError, api_for, checked_form, db

router = APIRouter(include_in_schema=False)
#: Kept as they are when a policy is saved from the page (only the name and spec are edited).
KEPT = ("segment_tags", "segment_risk_band", "segment_min_amount", "priority", "is_default")


def _admin(user: SignedIn) -> None:
    if not user.is_admin:
        raise PageError("Only an admin can view and edit dunning policies.", 403, user)


async def _policy(api: Api, policy_id: str) -> dict[str, Any]:
    policy = (
        await api.get_or_none("dunning", f"/v1/policies/{policy_id}")
        if SAFE_ID.match(policy_id)
        else None
    )
    if policy is None:
        raise PageError("There is no such policy.", 404, api.user)
    result: dict[str, Any] = policy
    return result


@router.get("/policies")
async def policies_page(request: Request, user: CurrentUser) -> Response:
    _admin(user)
    try:
        policies = await api_for(request, user).all_pages("dunning", "/v1/policies")
    except ServiceError as exc:
        raise PageError(exc.sentence, exc.status, user) from exc
    return render(request, "policies.html", {"user": user, "policies": policies})


async def _open_invoices(api: Api) -> list[dict[str, Any]]:
    """A few open invoices to pick for the preview (any invoice id may be typed)."""
    try:
        page = await api.get("invoice", "/v1/invoices", {"status": "open", "limit": 50})
    except ServiceError:
        return []
    items: list[dict[str, Any]] = page["items"]
    return items


async def _policy_page(
    request: Request,
    api: Api,
    policy: dict[str, Any],
    *,
    name: str | None = None,
    spec_text: str | None = None,
    invoice_id: str = "",
    notice: str | None = None,
    error: str | None = None,
    details: list[str] | None = None,
    preview: dict[str, Any] | None = None,
    status: int = 200,
) -> Response:
    return render(
        request,
        "policy.html",
        {
            "user": api.user,
            "policy": policy,
            "name": policy["name"] if name is None else name,
            "spec_text": json.dumps(policy["spec"], indent=2) if spec_text is None else spec_text,
            "invoice_id": invoice_id,
            "invoices": await _open_invoices(api),
            "notice": notice,
            "error": error,
            "details": details or [],
            "preview": preview,
        },
        status_code=status,
    )


@router.get("/policies/{policy_id}")
async def policy_page(
    request: Request, policy_id: str, user: CurrentUser, saved: bool = False
) -> Response:
    _admin(user)
    api = api_for(request, user)
    policy = await _policy(api, policy_id)
    notice = f"Policy saved as version {policy['version']}." if saved else None
    return await _policy_page(request, api, policy, notice=notice)


def _spec(form: FormData) -> dict[str, Any]:
    """The textarea's JSON; ValueError with the sentence to show."""
    text = str(form.get("spec") or "")
    try:
        spec = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(
            f"The spec is not valid JSON: line {exc.lineno}, column {exc.colno}: {exc.msg}."
        ) from exc
    if not isinstance(spec, dict):
        raise ValueError("The spec must be a JSON object, like the one shown at first.")
    return spec


@router.post("/policies/{policy_id}")
async def save_or_preview(request: Request, policy_id: str, user: CurrentUser) -> Response:
    """Save the edited spec (PUT, version + 1), or preview it for an invoice (no change)."""
    _admin(user)
    form = await checked_form(request, user)
    api = api_for(request, user)
    policy = await _policy(api, policy_id)
    name = str(form.get("name") or "").strip()
    spec_text = str(form.get("spec") or "")
    invoice_id = str(form.get("invoice_id") or "").strip()
    again: dict[str, Any] = {"name": name, "spec_text": spec_text, "invoice_id": invoice_id}
    try:
        spec = _spec(form)
    except ValueError as exc:
        return await _policy_page(request, api, policy, **again, error=str(exc), status=422)
    try:
        if form.get("action") == "preview":
            preview = await _preview(api, spec, invoice_id)
            return await _policy_page(request, api, policy, **again, preview=preview)
        body = {"name": name, "spec": spec, **{k: policy[k] for k in KEPT}}
        await _save(request, api, policy_id, body)
    except ServiceError as exc:
        return await _policy_page(
            request,
            api,
            policy,
            **again,
            error=exc.sentence.split(":")[0] + "." if exc.details else exc.sentence,
            details=exc.details,
            status=exc.status,
        )
    except ValueError as exc:
        return await _policy_page(request, api, policy, **again, error=str(exc), status=422)
    return RedirectResponse(f"/policies/{policy_id}?saved=1", status_code=303)


async def _save(request: Request, api: Api, policy_id: str, body: dict[str, Any]) -> None:
    """PUT the policy and audit it (subject: the policy)."""
    status, result = 0, None
    try:
        status, result = await api.write("dunning", "PUT", f"/v1/policies/{policy_id}", body)
    except ServiceError as exc:
        status, result = exc.status, {"error": exc.sentence, "details": exc.details}
        raise
    finally:
        async with db(request)() as session, session.begin():
            await session.execute(
                insert(UI_ACTION).values(
                    id=new_id("act"),
                    user_name=api.user.user_name,
                    subject_kind="policy",
                    subject_id=policy_id,
                    kind="policy_update",
                    service="dunning",
                    request=body,
                    status=status,
                    result=result,
                )
            )


async def _preview(api: Api, spec: dict[str, Any], invoice_id: str) -> dict[str, Any]:
    """The edited spec's timeline for the invoice (its facts from the invoice service)."""
    invoice = (
        await api.get_or_none("invoice", f"/v1/invoices/{invoice_id}")
        if invoice_id and SAFE_ID.match(invoice_id)
        else None
    )
    if invoice is None:
        raise ValueError("Choose an invoice by its id (such as inv_…) to preview the timeline.")
    customer = await api.get("invoice", f"/v1/customers/{invoice['customer_id']}")
    _, preview = await api.post(
        "dunning",
        "/v1/policies/preview",
        {
            "policy": spec,
            "invoice": {
                "invoice_id": invoice["id"],
                "customer_id": invoice["customer_id"],
                "number": invoice["number"],
                "issue_date": invoice["issue_date"],
                "due_date": invoice["due_date"],
                "total": invoice["total"],
                "balance": invoice["balance"],
                "currency": invoice["currency"],
                "timezone": customer.get("timezone") or "UTC",
                "country": customer["country"],
            },
        },
    )
    result: dict[str, Any] = {**preview, "invoice": invoice, "customer": customer}
    return result
