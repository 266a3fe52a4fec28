"""Async engine (asyncpg), session factory and the `SessionDep` every route uses."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)


def make_engine(url: str, *, pool_size: int = 10) -> AsyncEngine:
    """An asyncpg engine for `url` (postgresql+asyncpg://…)."""
    return create_async_engine(url, pool_size=pool_size, max_overflow=pool_size)


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Sessions that keep loaded objects usable after commit."""
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=True)


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    """One session per request; the route owns its transaction."""
    maker: async_sessionmaker[AsyncSession] = request.app.state.sessionmaker
    async with maker() as session:
        yield session


SessionDep = Annotated[AsyncSession, Depends(get_session)]
