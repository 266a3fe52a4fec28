"""A tiny service for the kit's tests: its own metadata with `api_token` and
`idempotency_record`, a `TokenAuth`, idempotent writes into a `thing` table."""

from __future__ import annotations

import secrets
from typing import Annotated, Any

from duewise_service.auth import Principal, TokenAuth, TokenCache, api_token_table
from duewise_service.db import SessionDep, make_sessionmaker
from duewise_service.idempotency import Idempotency, IdempotencyKeys, idempotency_table
from duewise_service.problems import DomainError, install_problem_handlers
from fastapi import Depends, FastAPI
from pydantic import BaseModel
from sqlalchemy import BigInteger, Column, Identity, MetaData, Table, Text, insert
from sqlalchemy.ext.asyncio import AsyncEngine

ADMIN = "kit-admin-" + secrets.token_hex(16)

METADATA = MetaData()
API_TOKEN = api_token_table(METADATA)
IDEMPOTENCY = idempotency_table(METADATA)
THING = Table(
    "thing",
    METADATA,
    Column("id", BigInteger, Identity(always=True), primary_key=True),
    Column("name", Text, nullable=False),
)
SCOPES = {"things:write": "make things", "things:read": "read things", "tokens:admin": "tokens"}
ROLE_SCOPES = {
    "admin": frozenset(SCOPES),
    "service": frozenset({"things:write", "things:read"}),
    "reader": frozenset({"things:read"}),
}
AUTH = TokenAuth(API_TOKEN, scopes=SCOPES, role_scopes=ROLE_SCOPES)
KEYS = IdempotencyKeys(IDEMPOTENCY, AUTH.current_principal)
CurrentPrincipal = Annotated[Principal, Depends(AUTH.current_principal)]
CanWrite = Annotated[Principal, Depends(AUTH.require("things:write"))]
CanRead = Annotated[Principal, Depends(AUTH.require("things:read"))]
IdempotencyDep = Annotated[Idempotency, Depends(KEYS.dependency)]


class ThingCreate(BaseModel):
    name: str


def build_app(engine: AsyncEngine) -> FastAPI:
    app = FastAPI()
    install_problem_handlers(app)
    app.state.sessionmaker = make_sessionmaker(engine)
    app.state.token_cache = TokenCache(ttl_s=10.0)
    app.state.fail_next = False

    @app.get("/me")
    async def me(principal: CanRead) -> dict[str, Any]:
        return {
            "id": principal.token_id,
            "role": principal.role,
            "scopes": sorted(principal.scopes),
        }

    @app.post("/things", status_code=201)
    async def make(
        data: ThingCreate, session: SessionDep, idem: IdempotencyDep, _: CanWrite
    ) -> Any:
        async def produce() -> dict[str, Any]:
            new_id = await session.scalar(
                insert(THING).values(name=data.name).returning(THING.c.id)
            )
            if app.state.fail_next:
                app.state.fail_next = False
                raise DomainError(409, "Try again", "the write failed after it began")
            return {"id": new_id, "name": data.name}

        async with session.begin():
            return await idem.run(session, 201, produce)

    app.include_router(AUTH.router())
    return app
