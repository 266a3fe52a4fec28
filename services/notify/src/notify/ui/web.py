"""What every collector UI page shares: the app state, the signed-in user, CSRF checks,
cookies, and the handlers that turn failures into a page with one plain sentence."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Annotated
from urllib.parse import urlencode

from duewise_service.audit import READ_METHODS, Actor, set_actor
from fastapi import Depends, Request
from fastapi.responses import RedirectResponse
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.datastructures import FormData
from starlette.responses import Response

from notify.config import Settings
from notify.ui import accounts
from notify.ui.accounts import SignedIn
from notify.ui.clients import Api, ServiceError, Services
from notify.ui.pages import error_page
from notify.ui.settings import UiSettings

SESSION_COOKIE = "dw_session"
LOGIN_CSRF_COOKIE = "dw_login_csrf"


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


def ui_state(request: Request) -> UiState:
    state: UiState = request.app.state.ui
    return state


def db(request: Request) -> async_sessionmaker[AsyncSession]:
    maker: async_sessionmaker[AsyncSession] = request.app.state.sessionmaker
    return maker


def api_for(request: Request, user: SignedIn) -> Api:
    services = ui_state(request).services
    assert services is not None, "the UI's lifespan has not run"
    return services.as_user(user)


async def current_user(request: Request) -> SignedIn:
    """The signed-in user; otherwise NotSignedIn (the handler redirects to /login)."""
    raw = request.cookies.get(SESSION_COOKIE)
    if raw:
        idle = dt.timedelta(minutes=ui_state(request).ui.session_idle_minutes)
        async with db(request)() as session, session.begin():
            user = await accounts.load_session(session, raw, idle)
        if user is not None:
            if request.method not in READ_METHODS:  # audit rows of this action name the user
                set_actor(
                    Actor(
                        f"ui:{user.user_name}",
                        user.role,
                        None,
                        request.method + " " + request.url.path,
                    )
                )
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


def secure_cookies(request: Request) -> bool:
    """Cookies are Secure when configured, and always in production."""
    state = ui_state(request)
    return state.ui.secure_cookies or state.settings.production


def local_path(value: str | None) -> str:
    """`value` if it is a path on this site, else `/` (no open redirect)."""
    if value and value.startswith("/") and not value.startswith("//") and "\\" not in value:
        return value
    return "/"


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
