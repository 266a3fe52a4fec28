"""Bearer tokens, roles and scopes: `CurrentPrincipal` and `require_scope("…")`."""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated

from duewise_service.db import SessionDep
from duewise_service.problems import DomainError
from fastapi import Depends, Request
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from invoice.models import ApiToken, Role

SCOPES: dict[str, str] = {
    "customers:write": "create and change customers and contacts",
    "invoices:write": "issue, void, write off and credit invoices",
    "payments:write": "record and reverse payments",
    "disputes:write": "open and resolve disputes",
    "import:write": "bulk-import CSV exports",
    "ar:read": "read customers, invoices, payments and reports",
    "tokens:admin": "create API tokens",
}
ROLE_SCOPES: dict[str, frozenset[str]] = {
    "admin": frozenset(SCOPES),
    "service": frozenset(
        {
            "customers:write",
            "invoices:write",
            "payments:write",
            "disputes:write",
            "import:write",
            "ar:read",
        }
    ),
    "collector": frozenset({"ar:read", "disputes:write"}),
}
ADMIN_ENV_TOKEN_ID = "tok_env_admin"


def hash_token(token: str) -> str:
    """SHA-256 hex of a token: tokens are 256-bit random, so a fast hash is the right one."""
    return hashlib.sha256(token.encode()).hexdigest()


def generate_token() -> str:
    """A new plaintext token (32 random bytes, URL-safe)."""
    return "dw_" + secrets.token_urlsafe(32)


@dataclass(frozen=True)
class Principal:
    """Who is calling: a token's id, name, role and effective scopes."""

    token_id: str
    name: str
    role: str
    scopes: frozenset[str]


def _unauthorized(detail: str) -> DomainError:
    return DomainError(
        401,
        "Unauthorized",
        detail,
        code="unauthorized",
        headers={"WWW-Authenticate": 'Bearer realm="duewise"'},
    )


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


async def current_principal(request: Request, session: SessionDep) -> Principal:
    """The principal of the request's bearer token; 401 without a valid one."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise _unauthorized("send Authorization: Bearer <token>")
    token_hash = hash_token(token.strip())
    cache: TokenCache | None = getattr(request.app.state, "token_cache", None)
    if cache is not None and (cached := cache.get(token_hash)) is not None:
        return cached
    async with session.begin():
        row = await session.scalar(
            select(ApiToken).where(
                col(ApiToken.token_hash) == token_hash,
                col(ApiToken.revoked_at).is_(None),
            )
        )
    if row is None:
        raise _unauthorized("the bearer token is not valid")
    scopes = frozenset(row.scopes) if row.scopes else ROLE_SCOPES.get(row.role, frozenset())
    principal = Principal(token_id=row.id, name=row.name, role=row.role, scopes=scopes)
    if cache is not None:
        cache.put(token_hash, principal)
    return principal


CurrentPrincipal = Annotated[Principal, Depends(current_principal)]


def require_scope(scope: str) -> Callable[[Principal], Awaitable[Principal]]:
    """A dependency that lets the request through only with `scope`; 403 otherwise."""
    if scope not in SCOPES:
        raise ValueError(f"unknown scope {scope!r}")

    async def check(principal: CurrentPrincipal) -> Principal:
        if scope not in principal.scopes:
            raise DomainError(
                403,
                "Forbidden",
                f"this token ({principal.role}) lacks the scope {scope!r}",
                code="forbidden",
                headers={"WWW-Authenticate": f'Bearer error="insufficient_scope", scope="{scope}"'},
            )
        return principal

    return check


CanWriteCustomers = Annotated[Principal, Depends(require_scope("customers:write"))]
CanWriteInvoices = Annotated[Principal, Depends(require_scope("invoices:write"))]
CanWritePayments = Annotated[Principal, Depends(require_scope("payments:write"))]
CanWriteDisputes = Annotated[Principal, Depends(require_scope("disputes:write"))]
CanImport = Annotated[Principal, Depends(require_scope("import:write"))]
CanReadAR = Annotated[Principal, Depends(require_scope("ar:read"))]
CanAdminTokens = Annotated[Principal, Depends(require_scope("tokens:admin"))]


async def upsert_admin_token(session: AsyncSession, token: str) -> None:
    """Store `token` (hashed) as the environment's admin token, replacing the previous one."""
    stmt = insert(ApiToken).values(
        id=ADMIN_ENV_TOKEN_ID,
        name="DUEWISE_ADMIN_TOKEN",
        role="admin",
        scopes=[],
        token_hash=hash_token(token),
    )
    stmt = stmt.on_conflict_do_update(
        index_elements=[col(ApiToken.id)],
        set_={"token_hash": stmt.excluded.token_hash, "revoked_at": None},
    )
    await session.execute(stmt)


async def create_token(
    *, session: AsyncSession, name: str, role: Role, scopes: list[str] | None = None
) -> tuple[ApiToken, str]:
    """A new token row and its plaintext (returned once, never stored)."""
    allowed = ROLE_SCOPES[role]
    if scopes is not None:
        extra = sorted(set(scopes) - allowed)
        if extra:
            raise DomainError(
                422,
                "Scope not allowed",
                f"scopes: {extra} are not allowed for role {role}",
                "scopes",
            )
    plaintext = generate_token()
    row = ApiToken(
        name=name, role=role, scopes=sorted(scopes or []), token_hash=hash_token(plaintext)
    )
    session.add(row)
    await session.flush()
    return row, plaintext
