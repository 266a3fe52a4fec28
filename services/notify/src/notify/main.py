"""The FastAPI app and its lifespan: the composition root of the notify service's API."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from duewise_service.audit import install_session_hook
from duewise_service.audit_api import audit_router
from duewise_service.auth import TokenCache
from duewise_service.db import make_engine, make_sessionmaker
from duewise_service.problems import install_problem_handlers
from duewise_service.ratelimit import WriteRateLimiter
from duewise_service.telemetry import instrument_api, setup_process
from fastapi import FastAPI

from notify.api import health, public, v1
from notify.auth import AUTH
from notify.compose import Links
from notify.config import Settings, get_settings
from notify.render import Renderer
from notify.ui import install_ui


def check_production(settings: Settings) -> None:
    """Refuse to start in production with the development signing key."""
    if settings.production and "local-development" in settings.secret_key.get_secret_value():
        raise RuntimeError("set NOTIFY_SECRET_KEY: reply links must not be signed with the dev key")


def create_app(settings: Settings | None = None) -> FastAPI:
    """The notify service's app, wired to `settings` (the environment's by default)."""
    settings = settings or get_settings()
    check_production(settings)
    setup_process("duewise-notify")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = make_engine(settings.sqlalchemy_url, pool_size=settings.db_pool_size)
        app.state.engine = engine
        app.state.sessionmaker = make_sessionmaker(engine)
        app.state.settings = settings
        app.state.token_cache = TokenCache()
        app.state.renderer = Renderer(settings.template_dir, settings.payment_link_template)
        app.state.links = Links(settings.secret_key.get_secret_value(), settings.public_url)
        if settings.admin_token is not None:
            async with app.state.sessionmaker() as session, session.begin():
                await AUTH.upsert_admin_token(session, settings.admin_token.get_secret_value())
        try:
            yield
        finally:
            await engine.dispose()

    app = FastAPI(
        title="duewise notify service",
        version="0.1.0",
        description=(
            "Email, SMS and webhooks: invoices on issue, reminders, thank-yous and alerts, "
            "the delivery log, templates, responses and bounces."
        ),
        lifespan=lifespan,
    )
    install_problem_handlers(app)
    # Writes: a per-token rate limit, and audit rows naming the token (duewise_service.audit).
    app.state.write_limiter = WriteRateLimiter.from_settings()
    install_session_hook()
    install_ui(app, settings)
    app.include_router(health.router)
    app.include_router(public.router)
    app.include_router(v1)
    app.include_router(audit_router(AUTH), prefix="/v1")
    instrument_api(app)
    return app
