"""The FastAPI app and its lifespan: the composition root of the risk service."""

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
from fastapi import Depends, FastAPI

from risk.api import health, v1
from risk.auth import AUTH
from risk.config import Settings, get_settings
from risk.portfolio import portfolio_guard


def create_app(settings: Settings | None = None) -> FastAPI:
    """The risk service's app, wired to `settings` (the environment's by default)."""
    settings = settings or get_settings()
    setup_process("duewise-risk")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = make_engine(settings.sqlalchemy_url, pool_size=settings.db_pool_size)
        app.state.engine = engine
        app.state.sessionmaker = make_sessionmaker(engine)
        app.state.settings = settings
        app.state.token_cache = TokenCache()
        if settings.admin_token is not None:
            async with app.state.sessionmaker() as session, session.begin():
                await AUTH.upsert_admin_token(session, settings.admin_token.get_secret_value())
        try:
            yield
        finally:
            await engine.dispose()

    app = FastAPI(
        title="duewise risk service",
        version="0.1.0",
        description="Payment-behaviour profiles, warning signs, explainable scores, analytics.",
        lifespan=lifespan,
    )
    install_problem_handlers(app)
    # Writes: a per-token rate limit, and audit rows naming the token (duewise_service.audit).
    app.state.write_limiter = WriteRateLimiter.from_settings()
    install_session_hook()
    app.include_router(health.router)
    # Collectors' tokens read their own portfolio only (risk.portfolio).
    app.include_router(v1, dependencies=[Depends(portfolio_guard)])
    app.include_router(audit_router(AUTH), prefix="/v1")
    instrument_api(app)
    return app
