"""`GET /v1/audit`: a service's audit log, for admins only (see duewise_service.audit).

There is deliberately no other route: the log is written by the database's triggers and
read here; nothing updates or deletes it.
"""

# No `from __future__ import annotations`: FastAPI reads the route's annotations at runtime.

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from pydantic import AwareDatetime, BaseModel
from sqlalchemy import select

from duewise_service.audit import AUDIT_LOG
from duewise_service.auth import Principal, TokenAuth
from duewise_service.db import SessionDep
from duewise_service.problems import DomainError

MAX_LIMIT = 500


class AuditEntry(BaseModel):
    id: int
    at: dt.datetime
    actor: str
    actor_role: str | None
    actor_token_id: str | None
    request: str | None
    trace_id: str | None
    action: str
    entity: str
    entity_id: str | None
    before: dict[str, Any] | None
    after: dict[str, Any] | None


class AuditPage(BaseModel):
    items: list[AuditEntry]
    next_cursor: str | None


def audit_router(auth: TokenAuth) -> APIRouter:
    """`GET /audit`: the log, newest first, filtered and paged; admins only (403 otherwise)."""
    router = APIRouter(prefix="/audit", tags=["audit"])
    t = AUDIT_LOG

    async def admin_only(
        principal: Annotated[Principal, Depends(auth.current_principal)],
    ) -> Principal:
        if principal.role != "admin":
            raise DomainError(
                403,
                "Forbidden",
                f"only admins read the audit log; this token's role is {principal.role}",
                code="forbidden",
            )
        return principal

    @router.get("", response_model=AuditPage)
    async def read_audit_log(
        session: SessionDep,
        _: Annotated[Principal, Depends(admin_only)],
        entity: Annotated[str | None, Query(max_length=200)] = None,
        entity_id: Annotated[str | None, Query(max_length=200)] = None,
        actor: Annotated[str | None, Query(max_length=200)] = None,
        action: Annotated[str | None, Query(pattern="^(insert|update|delete)$")] = None,
        trace_id: Annotated[str | None, Query(pattern="^[0-9a-f]{32}$")] = None,
        since: AwareDatetime | None = None,
        until: AwareDatetime | None = None,
        cursor: Annotated[str | None, Query(pattern="^[0-9]{1,18}$")] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 100,
    ) -> AuditPage:
        """Who changed what, from what to what, when and in which trace (newest first)."""
        stmt = select(t).order_by(t.c.id.desc()).limit(limit + 1)
        for column, value in (
            (t.c.entity, entity),
            (t.c.entity_id, entity_id),
            (t.c.actor, actor),
            (t.c.action, action),
            (t.c.trace_id, trace_id),
        ):
            if value is not None:
                stmt = stmt.where(column == value)
        if since is not None:
            stmt = stmt.where(t.c.at >= since)
        if until is not None:
            stmt = stmt.where(t.c.at < until)
        if cursor is not None:
            stmt = stmt.where(t.c.id < int(cursor))
        async with session.begin():
            rows = (await session.execute(stmt)).mappings().all()
        items = [AuditEntry.model_validate(dict(r)) for r in rows[:limit]]
        more = len(rows) > limit
        return AuditPage(items=items, next_cursor=str(items[-1].id) if more else None)

    return router
