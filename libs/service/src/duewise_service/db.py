"""The async engine (asyncpg), session factory and per-request session every service uses."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor
from sqlalchemy import event
from sqlalchemy.engine import ExceptionContext
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)


def make_engine(url: str, *, pool_size: int = 10) -> AsyncEngine:
    """An asyncpg engine for `url` (postgresql+asyncpg://…), with database spans."""
    engine = create_async_engine(url, pool_size=pool_size, max_overflow=pool_size)
    SQLAlchemyInstrumentor().instrument(engine=engine.sync_engine)
    event.listen(engine.sync_engine, "handle_error", _discard_broken_connection)
    return engine


def _discard_broken_connection(context: ExceptionContext) -> None:
    """Count asyncpg's InternalClientError as a lost connection, so that it is discarded.

    When PostgreSQL goes away under a transaction (a restart), asyncpg can fail the next
    statement with "cannot switch to state …; another operation is in progress" instead of
    a connection error. SQLAlchemy does not see a disconnect there and would put the broken
    connection back in the pool; marked, it is dropped and the request answered with a 503.
    """
    if type(context.original_exception).__name__ == "InternalClientError":
        context.is_disconnect = True


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Sessions that keep loaded objects usable after commit (responses are built after it)."""
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=True)


@contextlib.asynccontextmanager
async def worker_sessions(
    url: str, *, pool_size: int = 2
) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """Sessions for a background process (relay, consumer, scheduler); disposed on exit."""
    engine = make_engine(url, pool_size=pool_size)
    try:
        yield make_sessionmaker(engine)
    finally:
        await engine.dispose()


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    """One session per request; the route owns its transaction (`async with session.begin()`)."""
    maker: async_sessionmaker[AsyncSession] = request.app.state.sessionmaker
    async with maker() as session:
        yield session


SessionDep = Annotated[AsyncSession, Depends(get_session)]
