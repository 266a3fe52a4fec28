"""The FastAPI app and its lifespan: the composition root of the invoice service."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from duewise_service.audit import install_session_hook
from duewise_service.audit_api import audit_router
from duewise_service.auth import TokenCache
from duewise_service.db import make_engine, make_sessionmaker
from duewise_service.problems import install_problem_handlers
from duewise_service.ratelimit import WriteRateLimiter
from duewise_service.telemetry import instrument_api, setup_process
from fastapi import Depends, FastAPI

from invoice.api import health, v1
from invoice.auth import AUTH, IDEMPOTENCY_KEYS
from invoice.config import Settings, get_settings
from invoice.portfolio import portfolio_guard

log = logging.getLogger("invoice")
SERVICE_NAME = "duewise-invoice"


async def _purge_loop(app: FastAPI) -> None:
    while True:
        with contextlib.suppress(Exception):
            async with app.state.sessionmaker() as session, session.begin():
                await IDEMPOTENCY_KEYS.purge_expired(session)
        await asyncio.sleep(3600)


def create_app(settings: Settings | None = None) -> FastAPI:
    """The invoice service's app, wired to `settings` (the environment's by default)."""
    settings = settings or get_settings()
    setup_process(SERVICE_NAME)
    # setup_process routes uvicorn's loggers through ours, and so revives the access log that
    # uvicorn.run(access_log=False) had switched off: a JSON line per request, ~0.2 ms of CPU.
    # uvicorn writes it only while the logger has handlers, its own or inherited.
    access = logging.getLogger("uvicorn.access")
    if not settings.access_log:
        access.handlers.clear()
    access.propagate = settings.access_log

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = make_engine(settings.sqlalchemy_url, pool_size=settings.db_pool_size)
        app.state.engine = engine
        app.state.sessionmaker = make_sessionmaker(engine)
        app.state.settings = settings
        app.state.token_cache = TokenCache(ttl_s=settings.token_cache_ttl_s)
        if settings.admin_token is not None:
            async with app.state.sessionmaker() as session, session.begin():
                await AUTH.upsert_admin_token(session, settings.admin_token.get_secret_value())
        purger = asyncio.create_task(_purge_loop(app))
        try:
            yield
        finally:
            purger.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await purger
            await engine.dispose()

    app = FastAPI(
        title="duewise invoice service",
        version="0.1.0",
        description="System of record for customers, invoices, payments and their events.",
        lifespan=lifespan,
    )
    install_problem_handlers(app)
    # Writes: a per-token rate limit, and audit rows naming the token (duewise_service.audit).
    app.state.write_limiter = WriteRateLimiter.from_settings()
    install_session_hook()
    app.include_router(health.router)
    # Collectors' tokens see their own portfolio only (invoice.portfolio).
    app.include_router(v1, dependencies=[Depends(portfolio_guard)])
    app.include_router(audit_router(AUTH), prefix="/v1")
    instrument_api(app)
    return app
