"""The FastAPI app and its lifespan: the composition root of the dunning service."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
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

from dunning.api import health, v1
from dunning.auth import AUTH, IDEMPOTENCY_KEYS
from dunning.clock import clock
from dunning.config import Settings, get_settings
from dunning.portfolio import portfolio_guard


def init_clock(settings: Settings) -> None:
    """Start the clock at DUNNING_CLOCK (refused in production)."""
    if settings.clock:
        if settings.production:
            raise RuntimeError("DUNNING_CLOCK is refused when DUEWISE_ENV=production")
        clock.set(dt.datetime.fromisoformat(settings.clock))


async def _purge_loop(app: FastAPI) -> None:
    """Drop Idempotency-Key records older than a day, hourly."""
    while True:
        with contextlib.suppress(Exception):
            async with app.state.sessionmaker() as session, session.begin():
                await IDEMPOTENCY_KEYS.purge_expired(session)
        await asyncio.sleep(3600)


def create_app(settings: Settings | None = None) -> FastAPI:
    """The dunning service's app, wired to `settings` (the environment's by default)."""
    settings = settings or get_settings()
    setup_process("duewise-dunning")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = make_engine(settings.sqlalchemy_url, pool_size=settings.db_pool_size)
        app.state.engine = engine
        app.state.sessionmaker = make_sessionmaker(engine)
        app.state.settings = settings
        app.state.token_cache = TokenCache()
        init_clock(settings)
        async with app.state.sessionmaker() as session, session.begin():
            if settings.admin_token is not None:
                await AUTH.upsert_admin_token(session, settings.admin_token.get_secret_value())
            if settings.clock:
                await clock.store(session)
            elif not settings.production:
                await clock.load(session)
        purger = asyncio.create_task(_purge_loop(app))
        try:
            yield
        finally:
            purger.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await purger
            await engine.dispose()

    app = FastAPI(
        title="duewise dunning service",
        version="0.1.0",
        description="Dunning policies, schedules, reminders due, fees, promises and credit holds.",
        lifespan=lifespan,
    )
    install_problem_handlers(app)
    # Writes: a per-token rate limit, and audit rows naming the token (duewise_service.audit).
    app.state.write_limiter = WriteRateLimiter.from_settings()
    install_session_hook()
    app.include_router(health.router)
    # Collectors' tokens act on their own portfolio only (dunning.portfolio).
    app.include_router(v1, dependencies=[Depends(portfolio_guard)])
    app.include_router(audit_router(AUTH), prefix="/v1")
    instrument_api(app)
    return app
