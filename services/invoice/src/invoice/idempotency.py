"""`Idempotency-Key` for writes: the first response is stored in the write's own transaction.

In the route's transaction, before the write, `INSERT … ON CONFLICT DO NOTHING` claims
(principal, key) with a hash of method, path and canonical body:
- claimed: run the write, store its status and body in the same row, commit both together;
- taken with the same hash: replay the stored response (nothing is written again);
- taken with another hash: 422 `idempotency-key-reused`.
A concurrent duplicate blocks on the primary key until the first commits, then replays it.
A write that fails rolls back its claim too, so the key can be retried.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any

from duewise_service.problems import DomainError
from fastapi import Depends, Request
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse
from sqlalchemy import delete, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from invoice.auth import CurrentPrincipal
from invoice.models import IdempotencyRecord, utcnow

HEADER = "Idempotency-Key"
RETENTION = dt.timedelta(hours=24)


@dataclass(frozen=True)
class Idempotency:
    """The request's idempotency key (if any) and what identifies the request."""

    key: str | None
    principal: str
    method: str
    path: str
    request_hash: str

    async def run(
        self, session: AsyncSession, status_code: int, produce: Callable[[], Awaitable[Any]]
    ) -> JSONResponse:
        """Run `produce` (the write) once per key; call inside the route's transaction."""
        if self.key is None:
            return JSONResponse(jsonable_encoder(await produce()), status_code=status_code)
        claim = (
            insert(IdempotencyRecord)
            .values(
                principal=self.principal,
                key=self.key,
                method=self.method,
                path=self.path,
                request_hash=self.request_hash,
                created_at=utcnow(),
            )
            .on_conflict_do_nothing()
            .returning(col(IdempotencyRecord.key))
        )
        if await session.scalar(claim) is None:
            return await self._replay(session)
        body = jsonable_encoder(await produce())
        await session.execute(
            update(IdempotencyRecord)
            .where(*self._where())
            .values(status_code=status_code, response_body=body)
        )
        return JSONResponse(body, status_code=status_code)

    async def _replay(self, session: AsyncSession) -> JSONResponse:
        stmt = (
            select(IdempotencyRecord)
            .where(*self._where())
            .execution_options(populate_existing=True)
        )
        record = (await session.execute(stmt)).scalar_one()
        if record.request_hash != self.request_hash:
            raise DomainError(
                422,
                "Idempotency key reused",
                f"{HEADER}: this key was already used for a different request "
                f"({record.method} {record.path}); use a new key for a new request",
                HEADER,
                code="idempotency-key-reused",
            )
        return JSONResponse(
            record.response_body,
            status_code=record.status_code or 200,
            headers={"Idempotent-Replayed": "true"},
        )

    def _where(self) -> tuple[Any, ...]:
        return (
            col(IdempotencyRecord.principal) == self.principal,
            col(IdempotencyRecord.key) == self.key,
        )


def request_hash(method: str, path: str, body: bytes) -> str:
    """SHA-256 of method, path and the body as canonical JSON (key order and spacing ignored)."""
    try:
        canonical = json.dumps(json.loads(body), sort_keys=True, separators=(",", ":"))
    except (ValueError, UnicodeDecodeError):
        canonical = body.decode(errors="replace")
    return hashlib.sha256(f"{method}\n{path}\n{canonical}".encode()).hexdigest()


async def idempotency(request: Request, principal: CurrentPrincipal) -> Idempotency:
    """The request's Idempotency; 422 naming the header when the key is malformed."""
    key = request.headers.get(HEADER)
    if key is not None and not (1 <= len(key) <= 255):
        raise DomainError(
            422, "Invalid idempotency key", f"{HEADER}: must be 1..255 characters", HEADER
        )
    return Idempotency(
        key=key,
        principal=principal.token_id,
        method=request.method,
        path=request.url.path,
        request_hash=(
            request_hash(request.method, request.url.path, await request.body()) if key else ""
        ),
    )


IdempotencyDep = Annotated[Idempotency, Depends(idempotency)]


async def purge_expired(session: AsyncSession, older_than: dt.timedelta = RETENTION) -> int:
    """Delete records older than `older_than` (24 h by default); returns how many."""
    result = await session.execute(
        delete(IdempotencyRecord).where(col(IdempotencyRecord.created_at) < utcnow() - older_than)
    )
    return int(getattr(result, "rowcount", 0) or 0)
