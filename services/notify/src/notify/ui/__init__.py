"""The collector UI: server-rendered pages in the notify service, acting on the other
services over HTTP with each signed-in user's own tokens (it owns no AR data).

Wire it into the app with one call after the app is built:

    app = create_app(settings)
    install_ui(app, settings)
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from notify.config import Settings
from notify.ui import actions, dashboards, mail, policies, routes, signin
from notify.ui import tables as tables
from notify.ui.clients import ServiceError, Services
from notify.ui.errors import install_error_pages
from notify.ui.pages import STATIC_DIR
from notify.ui.settings import UiSettings
from notify.ui.web import (
    NotSignedIn,
    PageError,
    UiState,
    on_not_signed_in,
    on_page_error,
    on_service_error,
)

__all__ = ["UiSettings", "install_ui"]


def install_ui(app: FastAPI, settings: Settings, ui_settings: UiSettings | None = None) -> None:
    """Add the UI's pages, its /static files, its error pages (404 and 500 included) and its
    HTTP clients to `app`."""
    ui = ui_settings or UiSettings()
    state = UiState(settings=settings, ui=ui)
    app.state.ui = state
    inner = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(application: FastAPI) -> AsyncIterator[Any]:
        async with inner(application) as inner_state:
            timeout = httpx.Timeout(ui.service_timeout_s)
            async with (
                httpx.AsyncClient(timeout=timeout) as http,
                httpx.AsyncClient(
                    transport=httpx.ASGITransport(app=application),
                    base_url="http://notify.internal",
                    timeout=timeout,
                ) as own,
            ):
                admin = settings.admin_token
                state.services = Services(
                    http=http,
                    notify=own,
                    urls={
                        "invoice": settings.invoice_api_url,
                        "dunning": ui.dunning_api_url,
                        "risk": ui.risk_api_url,
                    },
                    secret=settings.secret_key.get_secret_value(),
                    # Risk issues no tokens (no /v1/tokens) and only reads: see notify.ui.users.
                    fallback_tokens={"risk": admin.get_secret_value()} if admin else {},
                )
                try:
                    yield inner_state
                finally:
                    state.services = None

    app.router.lifespan_context = lifespan
    app.include_router(signin.router)
    app.include_router(routes.router)
    app.include_router(actions.router)
    app.include_router(mail.router)
    app.include_router(dashboards.router)
    app.include_router(policies.router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="ui-static")
    app.add_exception_handler(NotSignedIn, on_not_signed_in)
    app.add_exception_handler(PageError, on_page_error)
    app.add_exception_handler(ServiceError, on_service_error)
    install_error_pages(app)
