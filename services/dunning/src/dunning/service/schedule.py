"""Per-invoice schedules: which policy applies, and the scheduled_step rows `plan()` implies."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from duewise_events.tracing import current_trace_headers
from sqlalchemy import Table, bindparam, insert, or_, update
from sqlalchemy import select as core_select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from dunning.domain.plan import InvoiceFacts, plan
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
from dunning.service.cache import cache_of, customer_of

#: Statuses after which nothing more is owed, so nothing may be sent.
CLOSED = frozenset({"paid", "void", "written_off"})
#: The id and version rows planned from the built-in default policy carry.
BUILTIN_POLICY_ID = "builtin-default"


@dataclass(frozen=True, slots=True)
class InvoiceRow:
    """A row of the invoice projection as plain data, for the paths that write it in one
    statement and read it back (building an ORM object cost more than planning it)."""

    id: str
    customer_id: str
    number: str
    kind: str
    issue_date: dt.date
    due_date: dt.date
    total: int
    balance: int
    currency: str
    status: str
    disputed: bool
    in_transit: int
    last_payment_date: dt.date | None
    updated_at: dt.datetime


#: An invoice as the handlers hold it: loaded through the ORM, or a row written in one go.
Invoice = InvoiceProjection | InvoiceRow


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
    cache = cache_of(session)
    if cache is not None:
        rows = await _live_policies(session)
        if customer.id not in cache.assignments:
            assigned = await session.get(PolicyAssignment, customer.id)
            cache.assignments[customer.id] = assigned.policy_id if assigned else None
        # A live policy is among `rows`; one not there is deleted (or gone), as below.
        policy_id = cache.assignments[customer.id]
        row = next((r for r in rows if r.id == policy_id), None) if policy_id else None
        if row is not None:
            return _resolved(session, row, f"assigned to customer {customer.id}")
    else:
        assigned = await session.get(PolicyAssignment, customer.id)
        if assigned is not None:
            row = await session.get(Policy, assigned.policy_id)
            if row is not None and row.deleted_at is None:
                return _resolved(session, row, f"assigned to customer {customer.id}")
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
        why = f"segment of policy {row.name!r} (priority {row.priority})"
        return _resolved(session, row, why)
    for row in rows:
        if row.is_default:
            return _resolved(session, row, "the default policy")
    return ResolvedPolicy(BUILTIN_POLICY_ID, 0, DEFAULT_POLICY, "the built-in default policy")


async def _live_policies(session: AsyncSession) -> list[Policy]:
    """Every policy not deleted, highest priority first (once per consumer transaction)."""
    cache = cache_of(session)
    if cache is not None and cache.policies is not None:
        return cache.policies
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
        cache.policies = rows
    return rows


async def spec_of(session: AsyncSession, policy_id: str) -> PolicySpec:
    """The spec a row was planned from (the built-in default, or a stored policy)."""
    row = await session.get(Policy, policy_id)
    return DEFAULT_POLICY if row is None else PolicySpec.model_validate(row.spec)


def _resolved(session: AsyncSession, row: Policy, why: str) -> ResolvedPolicy:
    cache = cache_of(session)
    key = (row.id, row.version)
    spec = cache.specs.get(key) if cache is not None else None
    if spec is None:
        spec = PolicySpec.model_validate(row.spec)
        if cache is not None:
            cache.specs[key] = spec
    return ResolvedPolicy(row.id, row.version, spec, why)


def facts_of(invoice: Invoice, customer: CustomerProjection) -> InvoiceFacts:
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


#: scheduled_step as a Core table. The consumer writes ~7 rows per invoice it plans; as ORM
#: objects (construction, attribute events, the unit of work) they cost more CPU than the
#: planning itself, as plain rows one INSERT or UPDATE of many parameter sets.
STEPS: Table = ScheduledStep.__table__  # type: ignore[attr-defined]
#: Every row of one invoice, locked (compiled once, then served from the statement cache).
_STEPS_OF = (
    core_select(STEPS)
    .where(STEPS.c.invoice_id == bindparam("invoice_id"))
    .order_by(STEPS.c.step_index)
    .with_for_update()
)
_INSERT_STEPS = insert(STEPS)
#: SET takes the columns of the parameter sets (all the same), WHERE the row's id.
_UPDATE_STEPS = update(STEPS).where(STEPS.c.id == bindparam("step_id"))


async def cancel_pending(session: AsyncSession, invoice_id: str, note: str) -> int:
    """Cancel every step not yet emitted (pending, or claimed by a scheduler mid-pass)."""
    result = await session.execute(
        update(STEPS)
        .where(STEPS.c.invoice_id == invoice_id, STEPS.c.status.in_(("pending", "claimed")))
        .values(status="cancelled", note=note, lease_until=None, updated_at=utcnow())
    )
    return int(getattr(result, "rowcount", 0) or 0)


async def recompute(session: AsyncSession, invoice_id: str, now: dt.datetime) -> None:
    """Bring the invoice's pending rows in line with `plan()`; emitted rows are never touched.

    Closed invoices lose every pending row at once. Steps no longer planned are cancelled;
    of the unfired steps already due only the latest stays (catch-up), the others are skipped.
    Claimed rows are left to the scheduler that holds them.
    """
    # No forced re-read: an invoice already in the session was loaded (and, by the handlers,
    # locked and changed) in this very transaction, so its state there is the current one.
    invoice = await session.get(InvoiceProjection, invoice_id)
    if invoice is not None:
        await recompute_invoice(session, invoice, now)


async def recompute_invoice(session: AsyncSession, invoice: Invoice, now: dt.datetime) -> None:
    """`recompute()` of an invoice the caller holds."""
    if invoice.status in CLOSED or invoice.balance == 0:
        await cancel_pending(session, invoice.id, f"invoice is {invoice.status}")
        return
    customer = await customer_of(session, invoice.customer_id)
    if customer is None:
        return
    # The rows first (locked), then the plan from the emitted ones among them.
    steps = (await session.execute(_STEPS_OF, {"invoice_id": invoice.id})).all()
    policy = await resolve_policy(session, customer, invoice.total)
    inserts, updates = step_rows(invoice, customer, policy, steps, now)
    if inserts:
        await session.execute(_INSERT_STEPS, inserts)
    if updates:
        await session.execute(_UPDATE_STEPS, updates)


def step_rows(
    invoice: Invoice,
    customer: CustomerProjection,
    policy: ResolvedPolicy,
    steps: Sequence[Any],
    now: dt.datetime,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The rows to insert and the changes (by `step_id`) that bring `steps`, the invoice's
    rows as they are, in line with its plan under `policy`."""
    fired = {s.step_key: s.emitted_at or s.send_at for s in steps if s.status == "emitted"}
    planned = plan(facts_of(invoice, customer), policy.spec, fired=fired)
    rows = {s.step_key: s for s in steps}
    unfired_due = [p for p in planned if p.fired_at is None and p.send_at <= now]
    latest_key = unfired_due[-1].key if unfired_due else None
    last_fired = max((p.index for p in planned if p.fired_at is not None), default=-1)
    stamp = utcnow()
    inserts: list[dict[str, Any]] = []
    updates: list[dict[str, Any]] = []
    wanted: set[str] = set()
    for p in planned:
        if p.fired_at is not None:
            continue
        superseded = (p.send_at <= now and p.key != latest_key) or p.index < last_fired
        row = rows.get(p.key)
        if row is not None and (
            row.status in ("emitted", "claimed") or (row.status == "skipped" and row.send_at <= now)
        ):
            continue
        wanted.add(p.key)
        values = {
            "status": "skipped" if superseded else "pending",
            "note": "superseded by a later step (catch-up)" if superseded else None,
            "step_index": p.index,
            "send_at": p.send_at,
            "local_date": p.send_date,
            "policy_id": policy.id,
            "policy_version": policy.version,
            "channel": p.step.channel,
            "fee_amount": p.fee_amount,
            "interest_amount": p.interest_amount,
            "reason": f"{p.reason}; policy {policy.why}",
            "lease_until": None,
            "claimed_by": None,
            "updated_at": stamp,
        }
        if row is None:
            inserts.append(
                {
                    **values,
                    "invoice_id": invoice.id,
                    "customer_id": invoice.customer_id,
                    "step_key": p.key,
                    "notice_id": None,
                    "emitted_at": None,
                    "traceparent": None,
                }
            )
        else:
            updates.append({**values, "step_id": row.id})
    for key, row in rows.items():
        if key not in wanted and row.status == "pending":
            # the same SET as the others' (one statement): the row's own values but three
            kept = {c: getattr(row, c) for c in _SET}
            kept.update(status="cancelled", note="no longer planned", updated_at=stamp)
            updates.append({**kept, "step_id": row.id})
    if inserts:
        # the planning event's trace, which the reminder will continue
        traceparent = current_trace_headers().get("traceparent")
        for values in inserts:
            values["traceparent"] = traceparent
    return inserts, updates


#: The columns a recompute sets on an existing row.
_SET = (
    "status",
    "note",
    "step_index",
    "send_at",
    "local_date",
    "policy_id",
    "policy_version",
    "channel",
    "fee_amount",
    "interest_amount",
    "reason",
    "lease_until",
    "claimed_by",
    "updated_at",
)


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
