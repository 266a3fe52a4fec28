"""The live path: one event, in the consumer's transaction, for one customer.

Lock the customer's row, fold the event into its state, and write in the same transaction
the ledger rows, the signal episodes and their outbox events, and the new score (with a
`risk.score_changed.v1` when the band moved).
"""

from __future__ import annotations

from duewise_events.catalogue import Event, RiskScoreChanged
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from risk.domain.effects import Effects
from risk.domain.fold import step
from risk.domain.score import Score, score
from risk.domain.state import CustomerState
from risk.domain.thresholds import Thresholds
from risk.models import OUTBOX, CustomerProfile
from risk.service.writes import add_movements, add_reminders, save_profile, write_signals


async def load_state(session: AsyncSession, customer_id: str) -> CustomerState:
    """The customer's state, locked for this transaction; a new one if never seen."""
    data = await session.scalar(
        select(col(CustomerProfile.state))
        .where(col(CustomerProfile.customer_id) == customer_id)
        .with_for_update()
    )
    if data:
        return CustomerState.from_json(data)
    return CustomerState(customer_id=customer_id)


def rescore(state: CustomerState, th: Thresholds, effects: Effects) -> Score | None:
    """Score a known customer; note a band change (a new customer starts in "low")."""
    if not state.known or state.now is None:
        return None
    now = state.instant
    assert now is not None
    result = score(state, th)
    if result.band != (state.band or "low"):
        effects.score_changed = RiskScoreChanged(
            customer_id=state.customer_id,
            score=result.score,
            band=result.band,
            previous_score=state.score,
            previous_band=state.band,
            factors=result.factors,
            changed_at=now,
        )
    state.score, state.band = result.score, result.band
    return result


async def apply_event(
    session: AsyncSession, event: Event, event_id: str, thresholds: Thresholds
) -> Effects:
    """Fold one event into its customer's profile and stage what it caused."""
    state = await load_state(session, event.customer_id)
    effects = step(state, event, event_id, thresholds)
    result = rescore(state, thresholds, effects) if effects.applied else None
    await add_movements(session, effects.movements)
    await add_reminders(session, effects.reminders)
    await write_signals(session, effects.raised, effects.cleared)
    outgoing: list[Event] = [*effects.raised, *effects.cleared]
    if effects.score_changed is not None:
        outgoing.append(effects.score_changed)
    for out in outgoing:
        await OUTBOX.add(session, out)
    await save_profile(session, state, result)
    return effects
