"""`Idempotency-Key` for writes: the first response is stored in the write's own transaction.

In the route's transaction, before the write, `INSERT … ON CONFLICT DO NOTHING` claims
(principal, key) with a hash of method, path and canonical body:
- claimed: run the write, store its status and body in the same row, commit both together;
- taken with the same hash: replay the stored response (nothing is written again);
- taken with another hash: 422 `idempotency-key-reused`.
A concurrent duplicate blocks on the primary key until the first commits, then replays it.
A write that fails rolls back its claim too, so the key can be retried.

Each service keeps its own `idempotency_record` table on its own metadata:

    IDEMPOTENCY_TABLE = idempotency_table(MyModel.metadata)
    KEYS = IdempotencyKeys(IDEMPOTENCY_TABLE, AUTH.current_principal)   # AUTH: a TokenAuth
    IdempotencyDep = Annotated[Idempotency, Depends(KEYS.dependency)]
    # route: async with session.begin(): return await idem.run(session, 201, lambda: make(…))
    # hourly: async with maker() as s, s.begin(): await KEYS.purge_expired(s)
"""

# No `from __future__ import annotations`: FastAPI reads the closure's annotations at runtime.

import datetime as dt
import functools
import hashlib
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse
from sqlalchemy import (
    Column,
    DateTime,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    TextClause,
    delete,
    func,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncSession

from duewise_service.auth import Principal
from duewise_service.problems import DomainError

HEADER = "Idempotency-Key"
RETENTION = dt.timedelta(hours=24)
IDEMPOTENCY_RECORD = "idempotency_record"


def idempotency_table(metadata: MetaData) -> Table:
    """The `idempotency_record` table on `metadata`, keyed by (principal, key)."""
    return Table(
        IDEMPOTENCY_RECORD,
        metadata,
        Column("principal", String, nullable=False),
        Column("key", String(255), nullable=False),
        Column("method", String, nullable=False),
        Column("path", String, nullable=False),
        Column("request_hash", String, nullable=False),
        Column("status_code", Integer),
        Column("response_body", JSONB),
        Column(
            "created_at",
            DateTime(timezone=True),
            nullable=False,
            server_default=func.now(),
            index=True,
        ),
        PrimaryKeyConstraint("principal", "key"),
    )


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass(frozen=True)
class Idempotency:
    """The request's idempotency key (if any) and what identifies the request."""

    table: Table
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
        t = self.table
        claimed = await session.scalar(
            _claim(t),
            {
                "principal": self.principal,
                "key": self.key,
                "method": self.method,
                "path": self.path,
                "request_hash": self.request_hash,
                "created_at": _utcnow(),
            },
        )
        if claimed is None:
            return await self._replay(session)
        body = jsonable_encoder(await produce())
        await session.execute(
            update(t).where(*self._where()).values(status_code=status_code, response_body=body)
        )
        return JSONResponse(body, status_code=status_code)

    async def _replay(self, session: AsyncSession) -> JSONResponse:
        t = self.table
        stmt = select(
            t.c.method, t.c.path, t.c.request_hash, t.c.status_code, t.c.response_body
        ).where(*self._where())
        record = (await session.execute(stmt)).one()
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
        return (self.table.c.principal == self.principal, self.table.c.key == self.key)


@functools.cache
def _claim(table: Table) -> TextClause:
    """`INSERT … ON CONFLICT DO NOTHING` claiming a key. As text: SQLAlchemy never caches the
    PostgreSQL dialect's INSERT (it is not cacheable), so built with `insert(…)` it would be
    compiled again on every write (~0.15 ms of CPU)."""
    columns = ("principal", "key", "method", "path", "request_hash", "created_at")
    return text(
        f"INSERT INTO {table.name} ({', '.join(columns)}) "
        f"VALUES ({', '.join(':' + c for c in columns)}) "
        "ON CONFLICT DO NOTHING RETURNING key"
    )


def request_hash(method: str, path: str, body: bytes) -> str:
    """SHA-256 of method, path and the body as canonical JSON (key order and spacing ignored)."""
    try:
        canonical = json.dumps(json.loads(body), sort_keys=True, separators=(",", ":"))
    except (ValueError, UnicodeDecodeError):
        canonical = body.decode(errors="replace")
    return hashlib.sha256(f"{method}\n{path}\n{canonical}".encode()).hexdigest()


class IdempotencyKeys:
    """Idempotency over one service's `idempotency_record` table, per authenticated principal."""

    def __init__(
        self, table: Table, current_principal: Callable[..., Awaitable[Principal]]
    ) -> None:
        self.table = table

        async def dependency(
            request: Request,
            principal: Annotated[Principal, Depends(current_principal)],
        ) -> Idempotency:
            """The request's Idempotency; 422 naming the header when the key is malformed."""
            key = request.headers.get(HEADER)
            if key is not None and not (1 <= len(key) <= 255):
                raise DomainError(
                    422, "Invalid idempotency key", f"{HEADER}: must be 1..255 characters", HEADER
                )
            digest = ""
            if key:
                digest = request_hash(request.method, request.url.path, await request.body())
            return Idempotency(
                table=table,
                key=key,
                principal=principal.token_id,
                method=request.method,
                path=request.url.path,
                request_hash=digest,
            )

        self.dependency = dependency

    async def purge_expired(
        self, session: AsyncSession, older_than: dt.timedelta = RETENTION
    ) -> int:
        """Delete records older than `older_than` (24 h by default); returns how many."""
        result = await session.execute(
            delete(self.table).where(self.table.c.created_at < _utcnow() - older_than)
        )
        return int(getattr(result, "rowcount", 0) or 0)
