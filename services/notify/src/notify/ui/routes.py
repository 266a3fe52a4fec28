"""The collector UI's pages and forms: sign-in, the worklist, the customer page, actions."""

from __future__ import annotations

import datetime as dt
import re
import secrets
import uuid
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any, get_args
from urllib.parse import quote, urlencode

from duewise_events.catalogue import ResponseReason
from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse
from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.datastructures import FormData
from starlette.responses import Response

from notify.config import Settings
from notify.models import new_id
from notify.render.formatting import currency_precision
from notify.ui import accounts
from notify.ui.accounts import SignedIn
from notify.ui.clients import Api, ServiceError, Services
from notify.ui.pages import error_page, render
from notify.ui.settings import UiSettings
from notify.ui.tables import UI_ACTION, UI_USER
from notify.ui.views import SAFE_ID, NotYours, customer_page, may_see, worklist

SESSION_COOKIE = "dw_session"
LOGIN_CSRF_COOKIE = "dw_login_csrf"
REASONS: tuple[str, ...] = get_args(ResponseReason)
IDEMPOTENCY_KEY = re.compile(r"^[A-Za-z0-9-]{8,100}$")

router = APIRouter(include_in_schema=False)


@dataclass
class UiState:
    """What the UI keeps on `app.state.ui`; `services` is set by the app's lifespan."""

    settings: Settings
    ui: UiSettings
    services: Services | None = None


class NotSignedIn(Exception):
    def __init__(self, next_path: str, expired: bool) -> None:
        self.next_path = next_path
        self.expired = expired


class PageError(Exception):
    def __init__(self, sentence: str, status: int, user: SignedIn | None = None) -> None:
        super().__init__(sentence)
        self.sentence = sentence
        self.status = status
        self.user = user


def _state(request: Request) -> UiState:
    state: UiState = request.app.state.ui
    return state


def _maker(request: Request) -> async_sessionmaker[AsyncSession]:
    maker: async_sessionmaker[AsyncSession] = request.app.state.sessionmaker
    return maker


def _api(request: Request, user: SignedIn) -> Api:
    services = _state(request).services
    assert services is not None, "the UI's lifespan has not run"
    return services.as_user(user)


async def current_user(request: Request) -> SignedIn:
    """The signed-in user; otherwise NotSignedIn (the handler redirects to /login)."""
    raw = request.cookies.get(SESSION_COOKIE)
    if raw:
        idle = dt.timedelta(minutes=_state(request).ui.session_idle_minutes)
        async with _maker(request)() as session, session.begin():
            user = await accounts.load_session(session, raw, idle)
        if user is not None:
            return user
    path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    raise NotSignedIn(path if request.method == "GET" else "/", expired=bool(raw))


CurrentUser = Annotated[SignedIn, Depends(current_user)]


async def checked_form(request: Request, user: SignedIn) -> FormData:
    """The POSTed form, after its CSRF token is checked against the session's (403 if not)."""
    form = await request.form()
    given = form.get("csrf_token")
    if not accounts.same_token(given if isinstance(given, str) else None, user.csrf_token):
        raise PageError(
            "This form has expired or did not come from this site; reload the page and try again.",
            403,
            user,
        )
    return form


def _secure(request: Request) -> bool:
    """Cookies are Secure when configured, and always in production."""
    state = _state(request)
    return state.ui.secure_cookies or state.settings.production


def _local_path(value: str | None) -> str:
    """`value` if it is a path on this site, else `/` (no open redirect)."""
    if value and value.startswith("/") and not value.startswith("//") and "\\" not in value:
        return value
    return "/"


# --- sign-in --------------------------------------------------------------------------------


def _login_page(
    request: Request, *, next_path: str, message: str | None, status: int, user_name: str = ""
) -> Response:
    token = secrets.token_urlsafe(32)
    response = render(
        request,
        "login.html",
        {
            "user": None,
            "csrf_token": token,
            "next": next_path,
            "message": message,
            "user_name": user_name,
        },
        status_code=status,
    )
    response.set_cookie(
        LOGIN_CSRF_COOKIE,
        token,
        httponly=True,
        samesite="strict",
        secure=_secure(request),
        path="/login",
    )
    return response


@router.get("/login")
async def login_form(request: Request, next: str = "/", expired: bool = False) -> Response:
    message = "Your session has expired; please sign in again." if expired else None
    return _login_page(request, next_path=_local_path(next), message=message, status=200)


@router.post("/login")
async def login(request: Request) -> Response:
    form = await request.form()
    user_name = str(form.get("user_name", "")).strip()
    password = str(form.get("password", ""))
    next_path = _local_path(str(form.get("next", "/")))
    cookie = request.cookies.get(LOGIN_CSRF_COOKIE)
    if cookie is None or not accounts.same_token(str(form.get("csrf_token", "")), cookie):
        return error_page(
            request, "This sign-in form has expired; reload the page and try again.", 403
        )
    ui = _state(request).ui
    async with _maker(request)() as session, session.begin():
        window = dt.timedelta(minutes=ui.login_window_minutes)
        if await accounts.recent_failures(session, user_name, window) >= ui.login_max_failures:
            return _login_page(
                request,
                next_path=next_path,
                message=(
                    f"Too many failed sign-ins for this user; wait {ui.login_window_minutes} "
                    "minutes and try again."
                ),
                status=429,
                user_name=user_name,
            )
        ok = await accounts.authenticate(session, user_name, password)
        idle = dt.timedelta(minutes=ui.session_idle_minutes)
        session_id = await accounts.start_session(session, user_name, idle) if ok else None
    if session_id is None:
        return _login_page(
            request,
            next_path=next_path,
            message="The user name or the password is wrong.",
            status=401,
            user_name=user_name,
        )
    response = RedirectResponse(next_path, status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        session_id,
        httponly=True,
        samesite="lax",
        secure=_secure(request),
        path="/",
    )
    response.delete_cookie(LOGIN_CSRF_COOKIE, path="/login")
    return response


@router.post("/logout")
async def logout(request: Request, user: CurrentUser) -> Response:
    await checked_form(request, user)
    raw = request.cookies.get(SESSION_COOKIE, "")
    async with _maker(request)() as session, session.begin():
        await accounts.end_session(session, raw)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


# --- the worklist ---------------------------------------------------------------------------


@router.get("/")
async def worklist_page(
    request: Request,
    user: CurrentUser,
    owner: str | None = None,
    band: str | None = None,
    stage: str | None = None,
    currency: str | None = None,
) -> Response:
    """The user's customers in working order (admins: everyone's, or one owner's)."""
    chosen_owner = (owner or None) if user.is_admin else user.user_name
    async with _maker(request)() as session:
        try:
            work = await worklist(
                _api(request, user),
                session,
                owner=chosen_owner,
                band=band or None,
                stage=stage or None,
                currency=(currency or "").upper() or None,
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
            "complete": work.complete,
            "customers_read": work.customers_read,
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
}


async def _customer_response(
    request: Request,
    user: SignedIn,
    customer_id: str,
    *,
    notice: str | None = None,
    error: str | None = None,
    status: int = 200,
) -> Response:
    async with _maker(request)() as session:
        try:
            page = await customer_page(_api(request, user), session, customer_id)
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
        },
        status_code=status,
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


async def _owned_customer(api: Api, customer_id: str) -> dict[str, Any]:
    if not SAFE_ID.match(customer_id):
        raise PageError("There is no such customer in your portfolio.", 404, api.user)
    customer = await api.get_or_none("invoice", f"/v1/customers/{customer_id}")
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
) -> None:
    """Call the owning service and write the audit row, whatever its answer."""
    status, result = 0, None
    try:
        status, result = await api.post(service, path, body, idempotency_key)
    except ServiceError as exc:
        status, result = exc.status, {"error": exc.sentence}
        raise
    finally:
        async with _maker(request)() as session, session.begin():
            await session.execute(
                insert(UI_ACTION).values(
                    id=new_id("act"),
                    user_name=api.user.user_name,
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
    api = _api(request, user)
    customer = await _owned_customer(api, customer_id)
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
    try:
        await _act(
            request,
            api,
            customer_id=customer_id,
            kind="promise",
            service="dunning",
            path="/v1/promises",
            body=body,
            idempotency_key=_idempotency_key(form),
        )
    except ServiceError as exc:
        return await _customer_response(
            request, user, customer_id, error=exc.sentence, status=exc.status
        )
    return _redirect_done(customer_id, "promise")


@router.post("/customers/{customer_id}/responses")
async def log_response(request: Request, customer_id: str, user: CurrentUser) -> Response:
    """Log what the customer said (notify's responses), with a reason code and a note."""
    form = await checked_form(request, user)
    api = _api(request, user)
    await _owned_customer(api, customer_id)
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


# --- errors ---------------------------------------------------------------------------------


async def on_not_signed_in(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, NotSignedIn)
    query = {"next": exc.next_path, **({"expired": "1"} if exc.expired else {})}
    response = RedirectResponse("/login?" + urlencode(query), status_code=303)
    if exc.expired:
        response.delete_cookie(SESSION_COOKIE, path="/")
    return response


async def on_page_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, PageError)
    return error_page(request, exc.sentence, exc.status, exc.user)


async def on_service_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ServiceError)
    return error_page(request, exc.sentence, exc.status)
