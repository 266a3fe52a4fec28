"""Writing what a fold produced: the ledger and reminder rows, signal episodes, the profile
row. Shared by the live path (one customer per transaction, with outbox events) and the
rebuild (many customers at once, without events)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from duewise_events.catalogue import RiskSignalCleared, RiskSignalRaised
from sqlalchemy import insert, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

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
    """Upsert: a MessageSent confirms (and dates) the ReminderDue it was caused by."""
    for r in reminders:
        stmt = pg_insert(ReminderLog).values(
            id=r.id,
            customer_id=r.customer_id,
            step_key=r.step_key,
            on=r.on,
            currency=r.currency,
            invoice_ids=list(r.invoice_ids),
            sent=r.sent,
        )
        if r.sent:
            stmt = stmt.on_conflict_do_update(
                index_elements=[col(ReminderLog.id)], set_={"sent": True, "on": r.on}
            )
        else:
            stmt = stmt.on_conflict_do_nothing()
        await session.execute(stmt)


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
        await session.execute(
            pg_insert(RiskSignal).on_conflict_do_nothing(), [raised_row(e) for e in raised]
        )
    for c in cleared:
        await session.execute(
            update(RiskSignal)
            .where(col(RiskSignal.signal_id) == c.signal_id)
            .values(cleared_at=c.cleared_at, clear_reason=c.reason)
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
        if not group:
            continue
        stmt = pg_insert(CustomerProfile)
        stmt = stmt.on_conflict_do_update(
            index_elements=[col(CustomerProfile.customer_id)],
            set_={k: stmt.excluded[k] for k in group[0] if k != "customer_id"},
        )
        await session.execute(stmt, group)
    await save_worklist(session, [state for state, _ in profiles])


async def save_worklist(session: AsyncSession, states: Sequence[CustomerState]) -> None:
    """Upsert the known customers' worklist rows (the same transaction as their profiles)."""
    rows = [{**worklist_row(s), "updated_at": utcnow()} for s in states if s.known]
    if not rows:
        return
    stmt = pg_insert(WorklistRow)
    stmt = stmt.on_conflict_do_update(
        index_elements=[col(WorklistRow.customer_id)],
        set_={k: stmt.excluded[k] for k in rows[0] if k != "customer_id"},
    )
    await session.execute(stmt, rows)
