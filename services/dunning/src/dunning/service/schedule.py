"""Per-invoice schedules: which policy applies, and the scheduled_step rows `plan()` implies."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from duewise_events.tracing import current_trace_headers
from sqlalchemy import or_, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from dunning.domain.plan import InvoiceFacts, PlannedStep, plan
from dunning.domain.policy import DEFAULT_POLICY, PolicySpec
from dunning.models import (
    CustomerProjection,
    InvoiceProjection,
    Pause,
    Policy,
    PolicyAssignment,
    ScheduledStep,
    utcnow,
)

#: Statuses after which nothing more is owed, so nothing may be sent.
CLOSED = frozenset({"paid", "void", "written_off"})
#: The id and version rows planned from the built-in default policy carry.
BUILTIN_POLICY_ID = "builtin-default"


@dataclass(frozen=True)
class ResolvedPolicy:
    id: str
    version: int
    spec: PolicySpec
    why: str


async def resolve_policy(
    session: AsyncSession, customer: CustomerProjection, amount: int
) -> ResolvedPolicy:
    """Override, then the highest-priority matching segment, then the default policy."""
    assigned = await session.get(PolicyAssignment, customer.id)
    if assigned is not None:
        row = await session.get(Policy, assigned.policy_id)
        if row is not None and row.deleted_at is None:
            return _resolved(row, f"assigned to customer {customer.id}")
    rows = await _live_policies(session)
    for row in rows:
        if row.is_default:
            continue
        if not (row.segment_tags or row.segment_risk_band or row.segment_min_amount is not None):
            continue
        if not set(row.segment_tags) <= set(customer.tags):
            continue
        if row.segment_risk_band and row.segment_risk_band != customer.risk_band:
            continue
        if row.segment_min_amount is not None and amount < row.segment_min_amount:
            continue
        return _resolved(row, f"segment of policy {row.name!r} (priority {row.priority})")
    for row in rows:
        if row.is_default:
            return _resolved(row, "the default policy")
    return ResolvedPolicy(BUILTIN_POLICY_ID, 0, DEFAULT_POLICY, "the built-in default policy")


#: `session.info` key: set (to a dict) by a caller whose transaction never changes policies
#: (the consumer's, over a batch of events), so the policies are read once per transaction.
POLICY_CACHE = "dunning.live_policies"


async def _live_policies(session: AsyncSession) -> list[Policy]:
    """Every policy not deleted, highest priority first (once per transaction if cached)."""
    cache: dict[str, list[Policy]] | None = session.info.get(POLICY_CACHE)
    if cache is not None and "rows" in cache:
        return cache["rows"]
    rows = list(
        (
            await session.scalars(
                select(Policy)
                .where(col(Policy.deleted_at).is_(None))
                .order_by(col(Policy.priority).desc(), col(Policy.created_at))
            )
        ).all()
    )
    if cache is not None:
        cache["rows"] = rows
    return rows


async def spec_of(session: AsyncSession, policy_id: str) -> PolicySpec:
    """The spec a row was planned from (the built-in default, or a stored policy)."""
    row = await session.get(Policy, policy_id)
    return DEFAULT_POLICY if row is None else PolicySpec.model_validate(row.spec)


def _resolved(row: Policy, why: str) -> ResolvedPolicy:
    return ResolvedPolicy(row.id, row.version, PolicySpec.model_validate(row.spec), why)


def facts_of(invoice: InvoiceProjection, customer: CustomerProjection) -> InvoiceFacts:
    return InvoiceFacts(
        invoice_id=invoice.id,
        customer_id=invoice.customer_id,
        number=invoice.number,
        issue_date=invoice.issue_date,
        due_date=invoice.due_date,
        total=invoice.total,
        balance=invoice.balance,
        currency=invoice.currency,
        timezone=customer.timezone,
        country=customer.country,
        last_payment_date=invoice.last_payment_date,
        kind=invoice.kind,
    )


async def steps_of(session: AsyncSession, invoice_id: str) -> list[ScheduledStep]:
    return list(
        (
            await session.scalars(
                select(ScheduledStep)
                .where(col(ScheduledStep.invoice_id) == invoice_id)
                .order_by(col(ScheduledStep.step_index))
                .with_for_update()
                .execution_options(populate_existing=True)
            )
        ).all()
    )


async def cancel_pending(session: AsyncSession, invoice_id: str, note: str) -> int:
    """Cancel every step not yet emitted (pending, or claimed by a scheduler mid-pass)."""
    result = await session.execute(
        update(ScheduledStep)
        .where(
            col(ScheduledStep.invoice_id) == invoice_id,
            col(ScheduledStep.status).in_(("pending", "claimed")),
        )
        .values(status="cancelled", note=note, lease_until=None, updated_at=utcnow())
    )
    return int(getattr(result, "rowcount", 0) or 0)


async def planned_for(
    session: AsyncSession,
    invoice: InvoiceProjection,
    customer: CustomerProjection,
    steps: list[ScheduledStep] | None = None,
) -> tuple[ResolvedPolicy, list[PlannedStep]]:
    """The invoice's plan under its policy, with the steps already emitted marked fired.

    `steps`: every row of the invoice, when the caller has just read them (one query less).
    """
    policy = await resolve_policy(session, customer, invoice.total)
    if steps is None:
        steps = list(
            (
                await session.scalars(
                    select(ScheduledStep).where(
                        col(ScheduledStep.invoice_id) == invoice.id,
                        col(ScheduledStep.status) == "emitted",
                    )
                )
            ).all()
        )
    fired = {s.step_key: s.emitted_at or s.send_at for s in steps if s.status == "emitted"}
    return policy, plan(facts_of(invoice, customer), policy.spec, fired=fired)


async def recompute(session: AsyncSession, invoice_id: str, now: dt.datetime) -> None:
    """Bring the invoice's pending rows in line with `plan()`; emitted rows are never touched.

    Closed invoices lose every pending row at once. Steps no longer planned are cancelled;
    of the unfired steps already due only the latest stays (catch-up), the others are skipped.
    Claimed rows are left to the scheduler that holds them.
    """
    # No forced re-read: an invoice already in the session was loaded (and, by the handlers,
    # locked and changed) in this very transaction, so its state there is the current one.
    invoice = await session.get(InvoiceProjection, invoice_id)
    if invoice is None:
        return
    if invoice.status in CLOSED or invoice.balance == 0:
        await cancel_pending(session, invoice_id, f"invoice is {invoice.status}")
        return
    customer = await session.get(CustomerProjection, invoice.customer_id)
    if customer is None:
        return
    # The rows first (locked), then the plan from the emitted ones among them: one query for
    # both instead of one for the emitted steps and another for all of them.
    steps = await steps_of(session, invoice_id)
    policy, planned = await planned_for(session, invoice, customer, steps)
    rows = {s.step_key: s for s in steps}
    unfired_due = [p for p in planned if p.fired_at is None and p.send_at <= now]
    latest_key = unfired_due[-1].key if unfired_due else None
    last_fired = max((p.index for p in planned if p.fired_at is not None), default=-1)
    wanted: set[str] = set()
    for p in planned:
        if p.fired_at is not None:
            continue
        superseded = (p.send_at <= now and p.key != latest_key) or p.index < last_fired
        row = rows.get(p.key)
        if row is None:
            row = ScheduledStep(
                invoice_id=invoice.id,
                customer_id=invoice.customer_id,
                step_key=p.key,
                step_index=p.index,
                send_at=p.send_at,
                local_date=p.send_date,
                policy_id=policy.id,
                policy_version=policy.version,
                channel=p.step.channel,
                # the planning event's trace, which the reminder will continue
                traceparent=current_trace_headers().get("traceparent"),
            )
            session.add(row)
        elif row.status in ("emitted", "claimed") or (
            row.status == "skipped" and row.send_at <= now
        ):
            continue
        wanted.add(p.key)
        row.status = "skipped" if superseded else "pending"
        row.note = "superseded by a later step (catch-up)" if superseded else None
        row.step_index, row.send_at, row.local_date = p.index, p.send_at, p.send_date
        row.policy_id, row.policy_version, row.channel = policy.id, policy.version, p.step.channel
        row.fee_amount, row.interest_amount = p.fee_amount, p.interest_amount
        row.reason = f"{p.reason}; policy {policy.why}"
        row.lease_until, row.claimed_by = None, None
        row.updated_at = utcnow()
    for key, row in rows.items():
        if key not in wanted and row.status == "pending":
            row.status, row.note, row.updated_at = "cancelled", "no longer planned", utcnow()
    await session.flush()


async def open_invoice_ids(session: AsyncSession, customer_id: str) -> list[str]:
    return list(
        (
            await session.scalars(
                select(InvoiceProjection.id).where(
                    col(InvoiceProjection.customer_id) == customer_id,
                    col(InvoiceProjection.status).not_in(CLOSED),
                )
            )
        ).all()
    )


async def active_pauses(
    session: AsyncSession, *, invoice_id: str, customer_id: str, today: dt.date
) -> list[Pause]:
    """Pauses in force for the invoice or its customer on `today`."""
    return list(
        (
            await session.scalars(
                select(Pause).where(
                    col(Pause.lifted_at).is_(None),
                    or_(col(Pause.invoice_id) == invoice_id, col(Pause.customer_id) == customer_id),
                    or_(col(Pause.resume_on).is_(None), col(Pause.resume_on) > today),
                )
            )
        ).all()
    )
