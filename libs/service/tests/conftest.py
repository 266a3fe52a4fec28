"""Fixtures: the kit's tiny service (service_kit_support) on a scratch database of the real
PostgreSQL, emptied before each test."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from duewise_dev.postgres import scratch_database
from duewise_service.db import make_engine, make_sessionmaker
from duewise_service.urls import sqlalchemy_url
from fastapi import FastAPI
from service_kit_support import ADMIN, AUTH, METADATA, build_app
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine


@pytest.fixture(scope="session")
async def kit_engine(pg_server_url: str) -> AsyncIterator[AsyncEngine]:
    async with scratch_database(pg_server_url, "duewise_service_kit") as url:
        engine = make_engine(sqlalchemy_url(url), pool_size=8)
        async with engine.begin() as conn:
            await conn.run_sync(METADATA.create_all)
        async with make_sessionmaker(engine)() as session, session.begin():
            await AUTH.upsert_admin_token(session, ADMIN)
        try:
            yield engine
        finally:
            await engine.dispose()


@pytest.fixture
async def kit_app(kit_engine: AsyncEngine) -> AsyncIterator[FastAPI]:
    async with kit_engine.begin() as conn:
        await conn.execute(text("TRUNCATE thing, idempotency_record RESTART IDENTITY"))
        await conn.execute(text("DELETE FROM api_token WHERE id <> 'tok_env_admin'"))
    yield build_app(kit_engine)


@pytest.fixture
async def admin(kit_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=kit_app),
        base_url="http://kit.test",
        headers={"Authorization": f"Bearer {ADMIN}"},
    ) as c:
        yield c


@pytest.fixture
async def anon(kit_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=kit_app), base_url="http://kit.test"
    ) as c:
        yield c
