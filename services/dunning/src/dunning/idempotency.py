"""`Idempotency-Key` on writes: the first response is stored in the write's own transaction."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any

from duewise_service.problems import DomainError
from fastapi import Depends, Request
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse
from sqlalchemy import update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from dunning.auth import CurrentPrincipal
from dunning.models import IdempotencyRecord

HEADER = "Idempotency-Key"


@dataclass(frozen=True)
class Idempotency:
    key: str | None
    principal: str
    request_hash: str

    async def run(
        self, session: AsyncSession, status_code: int, produce: Callable[[], Awaitable[Any]]
    ) -> JSONResponse:
        """Run `produce` once per key; call inside the route's transaction."""
        if self.key is None:
            return JSONResponse(jsonable_encoder(await produce()), status_code=status_code)
        where = (
            col(IdempotencyRecord.principal) == self.principal,
            col(IdempotencyRecord.key) == self.key,
        )
        claim = (
            insert(IdempotencyRecord)
            .values(principal=self.principal, key=self.key, request_hash=self.request_hash)
            .on_conflict_do_nothing()
            .returning(col(IdempotencyRecord.key))
        )
        if await session.scalar(claim) is None:
            stmt = select(IdempotencyRecord).where(*where).execution_options(populate_existing=True)
            record = (await session.execute(stmt)).scalar_one()
            if record.request_hash != self.request_hash:
                raise DomainError(
                    422,
                    "Idempotency key reused",
                    f"{HEADER}: this key was already used for a different request",
                    HEADER,
                )
            return JSONResponse(
                record.response_body,
                status_code=record.status_code or 200,
                headers={"Idempotent-Replayed": "true"},
            )
        body = jsonable_encoder(await produce())
        await session.execute(
            update(IdempotencyRecord)
            .where(*where)
            .values(status_code=status_code, response_body=body)
        )
        return JSONResponse(body, status_code=status_code)


async def idempotency(request: Request, principal: CurrentPrincipal) -> Idempotency:
    key = request.headers.get(HEADER)
    if key is not None and not (1 <= len(key) <= 255):
        raise DomainError(422, "Invalid idempotency key", f"{HEADER}: 1..255 characters", HEADER)
    digest = ""
    if key:
        raw = await request.body()
        try:
            canonical = json.dumps(json.loads(raw), sort_keys=True, separators=(",", ":"))
        except (ValueError, UnicodeDecodeError):
            canonical = raw.decode(errors="replace")
        text = f"{request.method}\n{request.url.path}\n{canonical}"
        digest = hashlib.sha256(text.encode()).hexdigest()
    return Idempotency(key=key, principal=principal.token_id, request_hash=digest)


IdempotencyDep = Annotated[Idempotency, Depends(idempotency)]
