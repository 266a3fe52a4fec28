"""The live path: one event, in the consumer's transaction, for one customer.

Lock the customer's row, fold the event into its state, and write in the same transaction
the ledger rows, the signal episodes and their outbox events, and the new score (with a
`risk.score_changed.v1` when the band moved).
"""

from __future__ import annotations

from collections.abc import Sequence

from duewise_events.catalogue import Event, RiskScoreChanged
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from risk.domain.effects import Effects
from risk.domain.fold import step
from risk.domain.score import Score, score
from risk.domain.state import CustomerState
from risk.domain.thresholds import Thresholds
from risk.models import OUTBOX, CustomerProfile
from risk.service.writes import add_movements, add_reminders, save_profiles, write_signals

#: The advisory-lock namespace of customer profiles (the key is hashtext(customer id)).
LOCK_NAMESPACE = 0x0D0E3003


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
            factors=[f.published() for f in result.factors],
            changed_at=now,
        )
    state.score, state.band = result.score, result.band
    return result


async def load_states(session: AsyncSession, customer_ids: list[str]) -> dict[str, CustomerState]:
    """The customers' states, locked for this transaction; a new state for one never seen.

    A transaction-level advisory lock per customer, taken in id order, rather than only
    FOR UPDATE: a customer's events can come from three topics at once, and a customer with
    no row yet has nothing FOR UPDATE could lock.
    """
    await session.execute(
        text(
            "SELECT pg_advisory_xact_lock(:ns, hashtext(c)) "
            "FROM (SELECT c FROM unnest(CAST(:ids AS text[])) AS c ORDER BY c) AS s"
        ),
        {"ns": LOCK_NAMESPACE, "ids": customer_ids},
    )
    rows = await session.execute(
        select(col(CustomerProfile.customer_id), col(CustomerProfile.state)).where(
            col(CustomerProfile.customer_id).in_(customer_ids)
        )
    )
    states = {cid: CustomerState.from_json(data) for cid, data in rows}
    for cid in customer_ids:
        states.setdefault(cid, CustomerState(customer_id=cid))
    return states


async def apply_batch(
    session: AsyncSession, items: Sequence[tuple[Event, str]], thresholds: Thresholds
) -> list[Effects]:
    """Fold events, in order, into their customers' profiles and stage what they caused,
    with a few statements for the whole batch. Every event is folded and scored exactly as
    if it came alone, so a batch emits the same signals and score changes."""
    states = await load_states(session, sorted({e.customer_id for e, _ in items}))
    scores: dict[str, Score] = {}
    done: list[Effects] = []
    for event, event_id in items:
        state = states[event.customer_id]
        effects = step(state, event, event_id, thresholds)
        if effects.applied:
            result = rescore(state, thresholds, effects)
            if result is not None:
                scores[state.customer_id] = result
        done.append(effects)
    await add_movements(session, [m for fx in done for m in fx.movements])
    await add_reminders(session, [r for fx in done for r in fx.reminders])
    await write_signals(
        session, [e for fx in done for e in fx.raised], [e for fx in done for e in fx.cleared]
    )
    outgoing: list[Event] = []
    for fx in done:
        outgoing += [*fx.raised, *fx.cleared]
        if fx.score_changed is not None:
            outgoing.append(fx.score_changed)
    await OUTBOX.add_many(session, outgoing)
    await save_profiles(session, [(s, scores.get(cid)) for cid, s in states.items()])
    return done


async def apply_event(
    session: AsyncSession, event: Event, event_id: str, thresholds: Thresholds
) -> Effects:
    """Fold one event into its customer's profile and stage what it caused."""
    (effects,) = await apply_batch(session, [(event, event_id)], thresholds)
    return effects
