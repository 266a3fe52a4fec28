"""Signing in and out: the sign-in form (double-submit CSRF cookie), the rate limit, the
session cookie."""

from __future__ import annotations

import datetime as dt
import secrets

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse
from starlette.responses import Response

from notify.ui import accounts
from notify.ui.pages import error_page, render
from notify.ui.web import (
    LOGIN_CSRF_COOKIE,
    SESSION_COOKIE,
    CurrentUser,
    checked_form,
    db,
    local_path,
    secure_cookies,
    ui_state,
)

router = APIRouter(include_in_schema=False)


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
        secure=secure_cookies(request),
        path="/login",
    )
    return response


@router.get("/login")
async def login_form(request: Request, next: str = "/", expired: bool = False) -> Response:
    message = "Your session has expired; please sign in again." if expired else None
    return _login_page(request, next_path=local_path(next), message=message, status=200)


@router.post("/login")
async def login(request: Request) -> Response:
    form = await request.form()
    user_name = str(form.get("user_name", "")).strip()
    password = str(form.get("password", ""))
    next_path = local_path(str(form.get("next", "/")))
    cookie = request.cookies.get(LOGIN_CSRF_COOKIE)
    if cookie is None or not accounts.same_token(str(form.get("csrf_token", "")), cookie):
        return error_page(
            request, "This sign-in form has expired; reload the page and try again.", 403
        )
    ui = ui_state(request).ui
    async with db(request)() as session, session.begin():
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
        secure=secure_cookies(request),
        path="/",
    )
    response.delete_cookie(LOGIN_CSRF_COOKIE, path="/login")
    return response


@router.post("/logout")
async def logout(request: Request, user: CurrentUser) -> Response:
    await checked_form(request, user)
    raw = request.cookies.get(SESSION_COOKIE, "")
    async with db(request)() as session, session.begin():
        await accounts.end_session(session, raw)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response
