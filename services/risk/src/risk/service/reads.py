"""Reads behind the customer, signal and score routes."""

from __future__ import annotations

import base64
import datetime as dt
import json
from typing import Any

from duewise_service.problems import DomainError
from sqlalchemy import or_, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from risk.domain.profile import profile
from risk.domain.state import CustomerState
from risk.domain.thresholds import Thresholds
from risk.models import CustomerProfile, RiskSignal, WorklistRow


def encode_cursor(values: list[Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(values).encode()).decode()


def decode_cursor(cursor: str) -> list[Any]:
    try:
        values = json.loads(base64.urlsafe_b64decode(cursor.encode()))
    except ValueError as exc:
        raise DomainError(
            422, "Bad cursor", "cursor: not a cursor from this API", "cursor"
        ) from exc
    if not isinstance(values, list):
        raise DomainError(422, "Bad cursor", "cursor: not a cursor from this API", "cursor")
    return values


async def customer_row(session: AsyncSession, customer_id: str) -> CustomerProfile:
    row = await session.get(CustomerProfile, customer_id)
    if row is None or not row.known:
        raise DomainError(404, "Not found", f"no risk profile for customer {customer_id!r}")
    return row


async def customer_profile(
    session: AsyncSession, customer_id: str, th: Thresholds
) -> dict[str, Any]:
    row = await customer_row(session, customer_id)
    doc = profile(CustomerState.from_json(row.state), th)
    doc["score"] = {"score": row.score, "band": row.band}
    return doc


def signal_doc(s: RiskSignal) -> dict[str, Any]:
    return {
        "signal_id": s.signal_id,
        "customer_id": s.customer_id,
        "kind": s.kind,
        "positive": s.positive,
        "severity": s.severity,
        "summary": s.summary,
        "recommendation": s.recommendation,
        "evidence": s.evidence,
        "raised_at": s.raised_at.isoformat(),
        "cleared_at": s.cleared_at.isoformat() if s.cleared_at else None,
        "clear_reason": s.clear_reason,
        "open": s.cleared_at is None,
    }


async def customer_signals(session: AsyncSession, customer_id: str) -> dict[str, Any]:
    await customer_row(session, customer_id)
    rows = (
        await session.scalars(
            select(RiskSignal)
            .where(col(RiskSignal.customer_id) == customer_id)
            .order_by(col(RiskSignal.raised_at).desc(), col(RiskSignal.signal_id))
        )
    ).all()
    return {
        "customer_id": customer_id,
        "open": [signal_doc(s) for s in rows if s.cleared_at is None],
        "past": [signal_doc(s) for s in rows if s.cleared_at is not None],
    }


async def list_signals(
    session: AsyncSession,
    *,
    open_: bool | None,
    kind: str | None,
    limit: int,
    cursor: str | None,
) -> tuple[list[dict[str, Any]], str | None]:
    """Newest first, keyset-paginated on (raised_at, signal_id)."""
    q = select(RiskSignal)
    if open_ is not None:
        q = q.where(
            col(RiskSignal.cleared_at).is_(None)
            if open_
            else col(RiskSignal.cleared_at).isnot(None)
        )
    if kind is not None:
        q = q.where(col(RiskSignal.kind) == kind)
    if cursor:
        raised, sid = decode_cursor(cursor)
        q = q.where(
            tuple_(col(RiskSignal.raised_at), col(RiskSignal.signal_id))
            < tuple_(dt.datetime.fromisoformat(raised), sid)  # type: ignore[arg-type]
        )
    q = q.order_by(col(RiskSignal.raised_at).desc(), col(RiskSignal.signal_id).desc())
    rows = (await session.scalars(q.limit(limit + 1))).all()
    more = len(rows) > limit
    rows = rows[:limit]
    nxt = encode_cursor([rows[-1].raised_at.isoformat(), rows[-1].signal_id]) if more else None
    return [signal_doc(s) for s in rows], nxt


def score_doc(row: CustomerProfile) -> dict[str, Any]:
    return {
        "customer_id": row.customer_id,
        "score": row.score,
        "band": row.band,
        "factors": row.factors,
        "as_of": row.as_of.isoformat() if row.as_of else None,
    }


async def customer_score(session: AsyncSession, customer_id: str) -> dict[str, Any]:
    row = await customer_row(session, customer_id)
    if row.score is None:
        raise DomainError(404, "Not found", f"customer {customer_id!r} has no score yet")
    return score_doc(row)


async def list_scores(
    session: AsyncSession, *, band: str | None, limit: int, cursor: str | None
) -> tuple[list[dict[str, Any]], str | None]:
    """The worklist order: highest score first, then customer id; keyset-paginated."""
    q = select(CustomerProfile).where(col(CustomerProfile.score).isnot(None))
    if band is not None:
        q = q.where(col(CustomerProfile.band) == band)
    if cursor:
        score, cid = decode_cursor(cursor)
        q = q.where(
            or_(
                col(CustomerProfile.score) < score,
                (col(CustomerProfile.score) == score) & (col(CustomerProfile.customer_id) > cid),
            )
        )
    q = q.order_by(col(CustomerProfile.score).desc(), col(CustomerProfile.customer_id))
    rows = (await session.scalars(q.limit(limit + 1))).all()
    more = len(rows) > limit
    rows = rows[:limit]
    nxt = encode_cursor([rows[-1].score, rows[-1].customer_id]) if more else None
    return [score_doc(r) for r in rows], nxt


def worklist_doc(r: WorklistRow) -> dict[str, Any]:
    return {
        "customer_id": r.customer_id,
        "name": r.name,
        "owner": r.owner,
        "currency": r.currency,
        "band": r.band,
        "score": r.score,
        "open": r.open_amount,
        "overdue": r.overdue,
        "oldest_overdue_days": r.oldest_overdue_days,
        "broken_promises": r.broken_promises,
        "open_disputes": r.open_disputes,
        "promise_pending": r.promise_pending,
        "stage": r.stage,
        "on_hold": r.on_hold,
        "pushed_down": r.pushed_down,
        "as_of": r.as_of.isoformat() if r.as_of else None,
    }


async def list_worklist(
    session: AsyncSession,
    *,
    owner: str | None,
    band: str | None,
    stage: str | None,
    currency: str | None,
    limit: int,
    cursor: str | None,
) -> tuple[list[dict[str, Any]], str | None]:
    """Customers in working order, keyset-paginated along ix_worklist_row_(owner_)order: a
    page is one index range scan, however deep and however big the book."""
    key = (
        col(WorklistRow.pushed_down),
        col(WorklistRow.band_rank),
        col(WorklistRow.overdue_rank),
        col(WorklistRow.customer_id),
    )
    q = select(WorklistRow)
    if owner is not None:
        q = q.where(col(WorklistRow.owner) == owner)
    if band is not None:
        q = q.where(col(WorklistRow.band) == band)
    if stage is not None:
        q = q.where(col(WorklistRow.stage) == stage)
    if currency is not None:
        q = q.where(col(WorklistRow.currency) == currency)
    if cursor:
        values = decode_cursor(cursor)
        kinds = (bool, int, int, str)
        if len(values) != len(key) or not all(
            type(v) is t for v, t in zip(values, kinds, strict=False)
        ):
            raise DomainError(422, "Bad cursor", "cursor: not a cursor from this API", "cursor")
        q = q.where(tuple_(*key) > tuple_(*values))
    # With an owner, its equality is the owner index's first column: the same order follows.
    q = q.order_by(*key)
    rows = (await session.scalars(q.limit(limit + 1))).all()
    more = len(rows) > limit
    rows = rows[:limit]
    last = rows[-1] if rows else None
    nxt = (
        encode_cursor([last.pushed_down, last.band_rank, last.overdue_rank, last.customer_id])
        if more and last is not None
        else None
    )
    return [worklist_doc(r) for r in rows], nxt
