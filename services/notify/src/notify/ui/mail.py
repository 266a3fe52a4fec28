"""Mail and SMS caught locally (`make run`'s catcher), so a new user sees what customers
would receive. Read from the catcher's JSON API (`CATCHER_URL`); a collector sees only what
was sent to the contacts of its own customers, an admin everything.

An email's HTML is shown in an empty-`sandbox` `srcdoc` frame (no scripts, no forms, an
opaque origin) under the page's own strict policy plus the hashes of its `<style>` blocks;
attachments are passed through as downloads, never rendered."""

from __future__ import annotations

from typing import Any

import httpx
from fastapi import APIRouter, Request
from starlette.responses import Response

from notify.ui.accounts import SignedIn
from notify.ui.clients import ServiceError
from notify.ui.pages import render, style_hashes
from notify.ui.views import may_see
from notify.ui.web import CurrentUser, PageError, api_for, ui_state

router = APIRouter(include_in_schema=False)
#: Mail and SMS listed at most (the catcher keeps 5,000 of each).
SHOWN = 200


async def _catcher(request: Request, path: str) -> httpx.Response:
    state = ui_state(request)
    assert state.services is not None, "the UI's lifespan has not run"
    url = state.ui.catcher_url.rstrip("/")
    try:
        response = await state.services.http.get(url + path)
    except httpx.HTTPError as exc:
        raise ServiceError(
            f"The mail catcher at {url} cannot be reached; `make run` starts it.", 502
        ) from exc
    if response.status_code == 404:
        raise ServiceError("The mail catcher no longer holds this message.", 404)
    if response.status_code != 200:
        raise ServiceError(f"The mail catcher had a problem (HTTP {response.status_code}).", 502)
    return response


async def _reachable(request: Request, user: SignedIn) -> tuple[set[str], set[str]] | None:
    """The email addresses and phone numbers of the user's customers' contacts (None: all)."""
    if user.is_admin:
        return None
    api = api_for(request, user)
    # `owner` narrows the list where the invoice service supports it; may_see decides anyway.
    customers = await api.all_pages("invoice", "/v1/customers", {"owner": user.user_name})
    emails, phones = set(), set()
    for c in customers:
        if may_see(user, c):
            for contact in c.get("contacts", []):
                if contact.get("email"):
                    emails.add(str(contact["email"]).lower())
                if contact.get("phone"):
                    phones.add(str(contact["phone"]))
    return emails, phones


def _mail_visible(mail: dict[str, Any], reach: tuple[set[str], set[str]] | None) -> bool:
    if reach is None:
        return True
    return any(str(r).lower() in reach[0] for r in mail.get("recipients", []))


def _sms_visible(sms: dict[str, Any], reach: tuple[set[str], set[str]] | None) -> bool:
    return reach is None or sms.get("to") in reach[1]


@router.get("/mail")
async def mail_page(request: Request, user: CurrentUser, id: int | None = None) -> Response:
    """What was caught: the mail and SMS lists, and one message when `id` is given."""
    try:
        reach = await _reachable(request, user)
        mails = [
            m for m in (await _catcher(request, "/api/messages")).json() if _mail_visible(m, reach)
        ]
        sms = [s for s in (await _catcher(request, "/api/sms")).json() if _sms_visible(s, reach)]
        shown = None
        if id is not None:
            shown = (await _catcher(request, f"/api/messages/{id}")).json()
            if not _mail_visible(shown, reach):
                raise ServiceError("The mail catcher no longer holds this message.", 404)
    except ServiceError as exc:
        raise PageError(exc.sentence, exc.status, user) from exc
    return render(
        request,
        "mail.html",
        {
            "user": user,
            "mails": mails[:SHOWN],
            "sms": sms[:SHOWN],
            "more": max(0, len(mails) - SHOWN) + max(0, len(sms) - SHOWN),
            "shown": shown,
        },
        style_hashes=style_hashes(shown.get("html") if shown else None),
    )


@router.get("/mail/{mail_id}/attachments/{n}")
async def attachment(request: Request, mail_id: int, n: int, user: CurrentUser) -> Response:
    """One attachment of a caught message, as a download (never shown inline)."""
    try:
        reach = await _reachable(request, user)
        mail = (await _catcher(request, f"/api/messages/{mail_id}")).json()
        if not _mail_visible(mail, reach):
            raise ServiceError("The mail catcher no longer holds this message.", 404)
        got = await _catcher(request, f"/api/messages/{mail_id}/attachments/{n}")
    except ServiceError as exc:
        raise PageError(exc.sentence, exc.status, user) from exc
    names = [a.get("filename") or "" for a in mail.get("attachments", [])]
    name = (names[n] if 0 <= n < len(names) else "") or f"attachment-{n}"
    safe = "".join(ch for ch in name if ch.isalnum() or ch in "._- ")[:100] or "attachment"
    return Response(
        got.content,
        media_type=got.headers.get("content-type", "application/octet-stream"),
        headers={
            "Content-Disposition": f'attachment; filename="{safe}"',
            "Content-Security-Policy": "sandbox; default-src 'none'",
            "X-Content-Type-Options": "nosniff",
            "Cache-Control": "no-store",
        },
    )
