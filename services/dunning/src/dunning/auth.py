"""Bearer tokens (the same scheme as the invoice service): `CurrentPrincipal`."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Annotated

from duewise_service.db import SessionDep
from duewise_service.problems import DomainError
from fastapi import Depends, Request
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from dunning.models import ApiToken

ADMIN_ENV_TOKEN_ID = "tok_env_admin"


def hash_token(token: str) -> str:
    """SHA-256 hex of a 256-bit random token."""
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class Principal:
    token_id: str
    name: str
    role: str


def _unauthorized(detail: str) -> DomainError:
    return DomainError(
        401, "Unauthorized", detail, headers={"WWW-Authenticate": 'Bearer realm="duewise"'}
    )


async def current_principal(request: Request, session: SessionDep) -> Principal:
    """The caller, from `Authorization: Bearer <token>`; 401 otherwise."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise _unauthorized("send Authorization: Bearer <token>")
    async with session.begin():
        row = await session.scalar(
            select(ApiToken).where(
                col(ApiToken.token_hash) == hash_token(token.strip()),
                col(ApiToken.revoked_at).is_(None),
            )
        )
    if row is None:
        raise _unauthorized("the bearer token is not valid")
    return Principal(token_id=row.id, name=row.name, role=row.role)


CurrentPrincipal = Annotated[Principal, Depends(current_principal)]


async def upsert_admin_token(session: AsyncSession, token: str) -> None:
    """Store `token` (hashed) as the environment's admin token."""
    stmt = insert(ApiToken).values(
        id=ADMIN_ENV_TOKEN_ID,
        name="DUEWISE_ADMIN_TOKEN",
        role="admin",
        token_hash=hash_token(token),
    )
    stmt = stmt.on_conflict_do_update(
        index_elements=[col(ApiToken.id)],
        set_={"token_hash": stmt.excluded.token_hash, "revoked_at": None},
    )
    await session.execute(stmt)
