"""Writing what a fold produced: the ledger and reminder rows, signal episodes, the profile
row. Shared by the live path (one customer per transaction, with outbox events) and the
rebuild (many customers at once, without events)."""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from typing import Any

from duewise_events.catalogue import RiskSignalCleared, RiskSignalRaised
from sqlalchemy import Table, TextClause, bindparam, insert, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from risk.domain.effects import Movement, ReminderFact
from risk.domain.score import Score
from risk.domain.state import CustomerState
from risk.domain.worklist import worklist_row
from risk.models import (
    ArMovement,
    CustomerProfile,
    ReminderLog,
    RiskSignal,
    WorklistRow,
    utcnow,
)


@cache
def upsert(table: Table, columns: tuple[str, ...], update: tuple[str, ...] = ()) -> TextClause:
    """INSERT (columns) … ON CONFLICT on the primary key DO UPDATE SET `update` to the new
    row's values (DO NOTHING without), as a text statement built once per shape.

    SQLAlchemy does not cache the PostgreSQL dialect's `insert()` (`inherit_cache` is False),
    so the ON CONFLICT statements were compiled again on every transaction: in the paced
    bench/risk_consumer_rate run, most of the consumer's SQL compilations. A text statement
    is compiled once and then served from the engine's statement cache. Each parameter has
    its column's type (JSONB, arrays, timestamps are bound as the table binds them).
    """
    key = ", ".join(f'"{c.name}"' for c in table.primary_key.columns)
    conflict = (
        "DO UPDATE SET " + ", ".join(f'"{c}" = EXCLUDED."{c}"' for c in update)
        if update
        else "DO NOTHING"
    )
    names = ", ".join(f'"{c}"' for c in columns)
    values = ", ".join(f":{c}" for c in columns)
    stmt = text(
        f'INSERT INTO "{table.name}" ({names}) VALUES ({values}) ON CONFLICT ({key}) {conflict}'
    )
    return stmt.bindparams(*(bindparam(c, type_=table.c[c].type) for c in columns))


def movement_row(m: Movement) -> dict[str, Any]:
    return {
        "customer_id": m.customer_id,
        "invoice_id": m.invoice_id,
        "currency": m.currency,
        "on": m.on,
        "due": m.due,
        "amount": m.amount,
        "kind": m.kind,
        "ref": m.ref,
    }


async def add_movements(session: AsyncSession, movements: Sequence[Movement]) -> None:
    if movements:
        await session.execute(insert(ArMovement), [movement_row(m) for m in movements])


async def add_reminders(session: AsyncSession, reminders: Sequence[ReminderFact]) -> None:
    """Upsert: a MessageSent confirms (and dates) the ReminderDue it was caused by. The
    unconfirmed ones first: a confirmation wins whichever of the two came first."""
    table = _table(ReminderLog)
    for sent in (False, True):
        rows = [_reminder_row(r) for r in reminders if r.sent is sent]
        if rows:
            update = ("sent", "on") if sent else ()
            await session.execute(upsert(table, tuple(rows[0]), update), rows)


def _reminder_row(r: ReminderFact) -> dict[str, Any]:
    return {
        "id": r.id,
        "customer_id": r.customer_id,
        "step_key": r.step_key,
        "on": r.on,
        "currency": r.currency,
        "invoice_ids": list(r.invoice_ids),
        "sent": r.sent,
    }


def _table(model: Any) -> Table:
    table: Table = model.__table__
    return table


def raised_row(e: RiskSignalRaised) -> dict[str, Any]:
    return {
        "signal_id": e.signal_id,
        "customer_id": e.customer_id,
        "kind": e.kind,
        "positive": e.positive,
        "severity": e.severity,
        "summary": e.summary,
        "recommendation": e.recommendation,
        "evidence": e.evidence,
        "raised_at": e.raised_at,
    }


async def write_signals(
    session: AsyncSession,
    raised: Sequence[RiskSignalRaised],
    cleared: Sequence[RiskSignalCleared],
) -> None:
    if raised:
        rows = [raised_row(e) for e in raised]
        await session.execute(upsert(_table(RiskSignal), tuple(rows[0])), rows)
    if cleared:
        # by primary key, one statement for all (ORM bulk UPDATE, a cached statement)
        await session.execute(
            update(RiskSignal),
            [
                {"signal_id": c.signal_id, "cleared_at": c.cleared_at, "clear_reason": c.reason}
                for c in cleared
            ],
        )


def profile_row(state: CustomerState, score: Score | None) -> dict[str, Any]:
    """The profile row; without a score, the score columns are left out (kept as they are)."""
    row: dict[str, Any] = {
        "customer_id": state.customer_id,
        "known": state.known,
        "currency": state.currency,
        "state": state.to_json(),
        "as_of": state.instant,
        "updated_at": utcnow(),
    }
    if score is not None:
        row["score"], row["band"] = score.score, score.band
        row["factors"] = [f.as_dict() for f in score.factors]
    return row


async def save_profiles(
    session: AsyncSession, profiles: Sequence[tuple[CustomerState, Score | None]]
) -> None:
    """Insert or update the customers' rows (the caller holds their locks); rows without a
    new score keep the score they have."""
    rows = [profile_row(state, score) for state, score in profiles]
    for scored in (True, False):
        group = [r for r in rows if ("score" in r) is scored]
        if group:
            columns = tuple(group[0])
            stmt = upsert(_table(CustomerProfile), columns, columns[1:])
            await session.execute(stmt, group)
    await save_worklist(session, [state for state, _ in profiles])


async def save_worklist(session: AsyncSession, states: Sequence[CustomerState]) -> None:
    """Upsert the known customers' worklist rows (the same transaction as their profiles)."""
    rows = [{**worklist_row(s), "updated_at": utcnow()} for s in states if s.known]
    if not rows:
        return
    columns = tuple(rows[0])
    await session.execute(upsert(_table(WorklistRow), columns, columns[1:]), rows)
