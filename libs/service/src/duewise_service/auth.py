"""Bearer tokens, roles and scopes for every service: `TokenAuth` over the service's own table.

A token is 32 random bytes shown once and stored only as its SHA-256 hex digest. With 256
bits of entropy a fast unsalted hash is the right tool: nobody can brute-force the secret,
a slow KDF would only add latency to every request, and a salt would make lookup by hash
impossible. Looking a token up by its hash (a unique index) compares nothing secret-derived
in Python, so the check takes the same time whatever the presented token shares with a
real one.

Each service keeps its own `api_token` table on its own metadata (created by its own
migration) and its own scopes; a service module reads:

    API_TOKEN = api_token_table(MyModel.metadata)          # models: same metadata as the rest
    AUTH = TokenAuth(API_TOKEN, scopes=SCOPES, role_scopes=ROLE_SCOPES)
    CurrentPrincipal = Annotated[Principal, Depends(AUTH.current_principal)]
    CanWriteThings = Annotated[Principal, Depends(AUTH.require("things:write"))]
    # lifespan: app.state.token_cache = TokenCache(); await AUTH.upsert_admin_token(s, tok)
    # routes: v1.include_router(AUTH.router())   # POST /tokens (tokens:admin), GET /tokens/me

A token row with no scopes gets its role's scopes (`ROLE_SCOPES[role]`); with scopes, just
those (each must be allowed for the role). Verified tokens are cached per app when
`app.state.token_cache` holds a `TokenCache`, so a revoked token works until its entry
expires (`ttl_s`).
"""

# No `from __future__ import annotations`: FastAPI reads the closures' annotations at runtime.

import datetime as dt
import hashlib
import os
import secrets
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import (
    Column,
    DateTime,
    MetaData,
    String,
    Table,
    Text,
    func,
    select,
)
from sqlalchemy.dialects.postgresql import JSONB, insert
from sqlalchemy.ext.asyncio import AsyncSession

from duewise_service.audit import READ_METHODS, Actor, set_actor
from duewise_service.db import SessionDep
from duewise_service.problems import DomainError
from duewise_service.ratelimit import WriteRateLimiter

API_TOKEN = "api_token"
ADMIN_ENV_TOKEN_ID = "tok_env_admin"


def api_token_table(metadata: MetaData) -> Table:
    """The `api_token` table on `metadata`: id, name, role, scopes, token_hash, timestamps."""
    return Table(
        API_TOKEN,
        metadata,
        Column("id", String, primary_key=True),
        Column("name", String, nullable=False),
        Column("role", Text, nullable=False),
        Column("scopes", JSONB, nullable=False, server_default="[]"),
        Column("token_hash", String, nullable=False, unique=True),
        Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
        Column("revoked_at", DateTime(timezone=True)),
        # Whose token it is, for tokens bound to a person (a collector: their portfolio).
        Column("subject", Text),
    )


def hash_token(token: str) -> str:
    """SHA-256 hex of a token: tokens are 256-bit random, so a fast hash is the right one."""
    return hashlib.sha256(token.encode()).hexdigest()


def generate_token() -> str:
    """A new plaintext token (32 random bytes, URL-safe)."""
    return "dw_" + secrets.token_urlsafe(32)


def new_token_id() -> str:
    """A time-ordered token id such as `tok_0192f3a4b5c6d7e8f9a0b1c2d3e4f5a6`."""
    return f"tok_{time.time_ns() // 1_000_000:012x}{os.urandom(10).hex()}"


@dataclass(frozen=True)
class Principal:
    """Who is calling: a token's id, name, role, effective scopes and subject (the person a
    token is bound to, e.g. the collector whose portfolio it may see; None for systems)."""

    token_id: str
    name: str
    role: str
    scopes: frozenset[str]
    subject: str | None = None


@dataclass(frozen=True)
class TokenRecord:
    """A stored token, without its secret."""

    id: str
    name: str
    role: str
    scopes: list[str]
    created_at: dt.datetime


class TokenCreate(BaseModel):
    """A request for a new token: a role, and optionally fewer scopes than the role has."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    role: str
    scopes: list[str] | None = None
    subject: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        description="the person the token acts for (a collector's user name: their portfolio)",
    )


class TokenCreated(BaseModel):
    id: str
    name: str
    role: str
    scopes: list[str]
    subject: str | None = None
    created_at: dt.datetime
    token: str = Field(description="the plaintext token; shown once, stored only hashed")


class TokenCache:
    """Recently verified tokens, so a busy caller costs no database round trip per request.

    Only valid tokens are cached, for `ttl_s`: a revoked token stops working within that
    time. Bounded, so a flood of distinct tokens cannot grow it without limit.
    """

    def __init__(self, ttl_s: float = 10.0, max_entries: int = 10_000) -> None:
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._entries: dict[str, tuple[float, Principal]] = {}

    def get(self, token_hash: str) -> Principal | None:
        entry = self._entries.get(token_hash)
        if entry is None or entry[0] < time.monotonic():
            return None
        return entry[1]

    def put(self, token_hash: str, principal: Principal) -> None:
        if len(self._entries) >= self.max_entries:
            self._entries.clear()
        self._entries[token_hash] = (time.monotonic() + self.ttl_s, principal)


def _unauthorized(detail: str, realm: str) -> DomainError:
    return DomainError(
        401,
        "Unauthorized",
        detail,
        code="unauthorized",
        headers={"WWW-Authenticate": f'Bearer realm="{realm}"'},
    )


def _admit(request: Request, principal: Principal) -> Principal:
    """A write spends the token's write budget (429 when spent) and names the principal as
    the actor of the audit rows the request's changes produce."""
    if request.method not in READ_METHODS:
        limiter: WriteRateLimiter | None = getattr(request.app.state, "write_limiter", None)
        if limiter is not None:
            limiter.check(principal.token_id)
        set_actor(
            Actor(
                name=principal.name,
                role=principal.role,
                token_id=principal.token_id,
                request=f"{request.method} {request.url.path}",
            )
        )
    return principal


class TokenAuth:
    """Bearer-token authentication and scope checks over one service's `api_token` table."""

    def __init__(
        self,
        table: Table,
        *,
        scopes: Mapping[str, str],
        role_scopes: Mapping[str, Iterable[str]],
        realm: str = "duewise",
    ) -> None:
        self.table = table
        self.scopes = dict(scopes)
        self.role_scopes = {role: frozenset(s) for role, s in role_scopes.items()}
        for role, allowed in self.role_scopes.items():
            unknown = sorted(allowed - set(self.scopes))
            if unknown:
                raise ValueError(f"role {role!r} has unknown scopes {unknown}")
        self.realm = realm
        self.current_principal = self._make_current_principal()

    def _make_current_principal(self) -> Callable[[Request, AsyncSession], Awaitable[Principal]]:
        t = self.table
        realm = self.realm
        role_scopes = self.role_scopes

        async def current_principal(request: Request, session: SessionDep) -> Principal:
            """The principal of the request's bearer token; 401 without a valid one."""
            scheme, _, token = request.headers.get("authorization", "").partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise _unauthorized("send Authorization: Bearer <token>", realm)
            token_hash = hash_token(token.strip())
            cache: TokenCache | None = getattr(request.app.state, "token_cache", None)
            if cache is not None and (cached := cache.get(token_hash)) is not None:
                return _admit(request, cached)
            async with session.begin():
                row = (
                    await session.execute(
                        select(t.c.id, t.c.name, t.c.role, t.c.scopes, t.c.subject).where(
                            t.c.token_hash == token_hash, t.c.revoked_at.is_(None)
                        )
                    )
                ).first()
            if row is None:
                raise _unauthorized("the bearer token is not valid", realm)
            scopes = frozenset(row.scopes) if row.scopes else role_scopes.get(row.role, frozenset())
            principal = Principal(
                token_id=row.id, name=row.name, role=row.role, scopes=scopes, subject=row.subject
            )
            if cache is not None:
                cache.put(token_hash, principal)
            return _admit(request, principal)

        return current_principal

    def require(self, scope: str) -> Callable[[Principal], Awaitable[Principal]]:
        """A dependency that lets the request through only with `scope`; 403 otherwise."""
        if scope not in self.scopes:
            raise ValueError(f"unknown scope {scope!r}")

        async def check(
            principal: Annotated[Principal, Depends(self.current_principal)],
        ) -> Principal:
            if scope not in principal.scopes:
                raise DomainError(
                    403,
                    "Forbidden",
                    f"this token ({principal.role}) lacks the scope {scope!r}",
                    code="forbidden",
                    headers={
                        "WWW-Authenticate": f'Bearer error="insufficient_scope", scope="{scope}"'
                    },
                )
            return principal

        return check

    async def upsert_admin_token(self, session: AsyncSession, token: str) -> None:
        """Store `token` (hashed) as the environment's admin token, replacing the previous one."""
        stmt = insert(self.table).values(
            id=ADMIN_ENV_TOKEN_ID,
            name="DUEWISE_ADMIN_TOKEN",
            role="admin",
            scopes=[],
            token_hash=hash_token(token),
        )
        stmt = stmt.on_conflict_do_update(
            index_elements=[self.table.c.id],
            set_={"token_hash": stmt.excluded.token_hash, "revoked_at": None},
        )
        await session.execute(stmt)

    async def create_token(
        self,
        session: AsyncSession,
        *,
        name: str,
        role: str,
        scopes: list[str] | None = None,
        subject: str | None = None,
    ) -> tuple[TokenRecord, str]:
        """A new token row and its plaintext (returned once, never stored); 422 for a scope
        the role does not allow."""
        if role not in self.role_scopes:
            raise DomainError(422, "Unknown role", f"role: {role!r} is not a role", "role")
        extra = sorted(set(scopes or []) - self.role_scopes[role])
        if extra:
            raise DomainError(
                422,
                "Scope not allowed",
                f"scopes: {extra} are not allowed for role {role}",
                "scopes",
            )
        plaintext = generate_token()
        values: dict[str, Any] = {
            "id": new_token_id(),
            "name": name,
            "role": role,
            "scopes": sorted(set(scopes or [])),
            "token_hash": hash_token(plaintext),
            "subject": subject,
        }
        created_at = await session.scalar(
            insert(self.table).values(**values).returning(self.table.c.created_at)
        )
        assert created_at is not None
        record = TokenRecord(
            id=values["id"],
            name=name,
            role=role,
            scopes=values["scopes"],
            created_at=created_at,
        )
        return record, plaintext

    def router(self, *, admin_scope: str = "tokens:admin") -> APIRouter:
        """`POST /tokens` (needs `admin_scope`; the plaintext is returned once) and
        `GET /tokens/me` (the calling token's id, name, role and scopes)."""
        can_admin = self.require(admin_scope)
        router = APIRouter(prefix="/tokens", tags=["tokens"])

        @router.post("", status_code=201, response_model=TokenCreated)
        async def new_token(
            data: TokenCreate,
            session: SessionDep,
            _: Annotated[Principal, Depends(can_admin)],
        ) -> TokenCreated:
            """Create a token for a role; copy `token` now, it is stored only as a hash."""
            async with session.begin():
                row, plaintext = await self.create_token(
                    session,
                    name=data.name,
                    role=data.role,
                    scopes=data.scopes,
                    subject=data.subject,
                )
            return TokenCreated(
                id=row.id,
                name=row.name,
                role=row.role,
                scopes=row.scopes,
                subject=data.subject,
                created_at=row.created_at,
                token=plaintext,
            )

        @router.get("/me")
        async def whoami(
            principal: Annotated[Principal, Depends(self.current_principal)],
        ) -> dict[str, object]:
            """The calling token's id, name, role and scopes."""
            return {
                "id": principal.token_id,
                "name": principal.name,
                "role": principal.role,
                "scopes": sorted(principal.scopes),
                "subject": principal.subject,
            }

        return router
