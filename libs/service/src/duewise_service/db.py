"""The async engine (asyncpg), session factory and per-request session every service uses."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor
from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy import event
from sqlalchemy.engine import ExceptionContext
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)


class PoolSettings(BaseSettings):
    """The connection pool's wait, the same for every service (env DUEWISE_DB_POOL_TIMEOUT_S)."""

    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

    # SQLAlchemy's default is 30 s: under overload every request then queues for half a
    # minute before its 503, and the queue only grows. A short wait sheds load instead.
    db_pool_timeout_s: float = Field(
        default=2.0,
        gt=0,
        validation_alias=AliasChoices("DUEWISE_DB_POOL_TIMEOUT_S", "db_pool_timeout_s"),
        description="seconds a request waits for a free database connection before its 503 "
        "`overloaded` answer",
    )


#: How long a background process waits for a pooled connection (SQLAlchemy's default).
WORKER_POOL_TIMEOUT_S = 30.0


def make_engine(
    url: str, *, pool_size: int = 10, pool_timeout_s: float | None = None
) -> AsyncEngine:
    """An asyncpg engine for `url` (postgresql+asyncpg://…), with database spans.

    `pool_timeout_s` (default: DUEWISE_DB_POOL_TIMEOUT_S) bounds the wait for a connection
    when all of them are busy; then the pool raises and the service answers 503 `overloaded`.
    """
    timeout = pool_timeout_s if pool_timeout_s is not None else PoolSettings().db_pool_timeout_s
    engine = create_async_engine(
        url, pool_size=pool_size, max_overflow=pool_size, pool_timeout=timeout
    )
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
    url: str, *, pool_size: int = 4
) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """Sessions for a background process (relay, consumer, scheduler); disposed on exit.

    Four pooled connections by default: a consumer works up to four partitions at once
    (EventConsumer's partition_concurrency), and with fewer the pool's overflow connections
    were opened and closed again for most transactions (a new PostgreSQL backend each).

    No client is waiting on a worker, so it keeps SQLAlchemy's patient 30 s for a
    connection instead of the short wait that turns a request into a 503."""
    engine = make_engine(url, pool_size=pool_size, pool_timeout_s=WORKER_POOL_TIMEOUT_S)
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
