"""The due-work loop: claim due steps (SKIP LOCKED + lease), check, emit once, per notice.

Safe with several replicas. A pass:
1. claims due rows in its own short transaction (pending and due, or claimed with an expired
   lease: a killed worker's claim is retried);
2. keeps only each invoice's latest claimed step (catch-up: the older ones are skipped);
3. re-checks each invoice against the projection (closed, paused, disputed, in transit),
   the customer's send window at this very instant (outside it, the step goes back to
   pending with its send_at moved to the window's next opening: after downtime or a late
   lease retry nothing goes out at night or on a weekend) and the invoice service's last
   look, cancelling what may not go out;
4. per (customer, local date), in ONE transaction: marks the rows emitted (only if this
   worker still holds them), inserts the notice (unique per customer, day and step: a
   second scheduler inserts nothing and emits nothing), stages ReminderDue, FeeAssessed and
   any stage change or credit hold in the outbox.
Then it settles promises whose date passed and lifts pauses whose resume date passed.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
import os
import socket
from collections import defaultdict
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

from duewise_events.catalogue import FeeAssessed, PromiseBroken, ReminderDue, ReminderInvoice
from sqlalchemy import text, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlmodel import col, select

from dunning.clock import Clock
from dunning.domain.plan import in_send_window, next_window_opening
from dunning.domain.policy import PolicySpec, Step
from dunning.handlers import lift_pauses, local_today
from dunning.lastlook import LastLook
from dunning.models import (
    OUTBOX,
    CustomerProjection,
    InvoiceProjection,
    Pause,
    Promise,
    ScheduledStep,
    new_id,
    utcnow,
)
from dunning.service.holds import escalate, place_hold
from dunning.service.schedule import CLOSED, active_pauses, recompute, spec_of

log = logging.getLogger("dunning.scheduler")

_CLAIM = text(
    """
    UPDATE scheduled_step SET status = 'claimed', lease_until = :lease_until,
           claimed_by = :me, updated_at = now()
    WHERE id IN (
        SELECT id FROM scheduled_step
        WHERE (status = 'pending' AND send_at <= :now
               AND (lease_until IS NULL OR lease_until <= :now))
           OR (status = 'claimed' AND lease_until < :now)
        ORDER BY send_at
        FOR UPDATE SKIP LOCKED
        LIMIT :n)
    RETURNING id
    """
)


@dataclass
class PassResult:
    claimed: int = 0
    emitted: int = 0
    notices: list[str] = field(default_factory=list)
    cancelled: int = 0
    skipped: int = 0
    deferred: int = 0


class Scheduler:
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        *,
        clock: Clock,
        last_look: LastLook | None,
        name: str | None = None,
        lease: dt.timedelta = dt.timedelta(seconds=60),
        batch: int = 500,
        retry_after: dt.timedelta = dt.timedelta(seconds=30),
        pause_after_claim_s: float = 0.0,
    ) -> None:
        self.sessionmaker = sessionmaker
        self.clock = clock
        self.last_look = last_look
        self.name = name or f"{socket.gethostname()}:{os.getpid()}:{id(self):x}"
        self.lease = lease
        self.batch = batch
        self.retry_after = retry_after
        # Fault tests set this to hold the worker between "claim committed" and "emitted",
        # so that it can be killed exactly there. Never set in production.
        self.pause_after_claim_s = pause_after_claim_s

    async def run(self, stop: asyncio.Event, interval_s: float = 1.0) -> None:
        while not stop.is_set():
            try:
                async with self.sessionmaker() as session, session.begin():
                    await self.clock.load(session)
                await self.run_once()
            except Exception:
                log.exception("scheduler pass failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), interval_s)

    async def claim(self, now: dt.datetime) -> list[int]:
        """Claim due rows for this worker (committed at once, so the lease protects them)."""
        async with self.sessionmaker() as session, session.begin():
            result = await session.execute(
                _CLAIM,
                {"now": now, "lease_until": now + self.lease, "me": self.name, "n": self.batch},
            )
            return [int(r[0]) for r in result]

    async def run_once(self) -> PassResult:
        now = self.clock.now()
        result = PassResult()
        await self.settle_promises(now)
        await self.lift_expired_pauses(now)
        ids = await self.claim(now)
        result.claimed = len(ids)
        if ids and self.pause_after_claim_s:
            log.warning(
                "fault hook: pausing %.1fs after claiming %s", self.pause_after_claim_s, ids
            )
            await asyncio.sleep(self.pause_after_claim_s)
        if ids:
            await self.process(ids, now, result)
        return result

    async def process(self, ids: list[int], now: dt.datetime, result: PassResult) -> None:
        async with self.sessionmaker() as session:
            rows = (
                await session.scalars(
                    select(ScheduledStep)
                    .where(col(ScheduledStep.id).in_(ids))
                    .order_by(col(ScheduledStep.step_index))
                )
            ).all()
        by_invoice: dict[str, list[ScheduledStep]] = defaultdict(list)
        for row in rows:
            by_invoice[row.invoice_id].append(row)
        latest: list[ScheduledStep] = []
        for steps in by_invoice.values():
            *older, last = steps
            latest.append(last)
            if older:
                await self._finish(older, "skipped", "superseded by a later step (catch-up)")
                result.skipped += len(older)
        by_customer: dict[str, list[ScheduledStep]] = defaultdict(list)
        for row in latest:
            by_customer[row.customer_id].append(row)
        for customer_id, steps in by_customer.items():
            await self._customer(customer_id, steps, now, result)

    async def _customer(
        self, customer_id: str, steps: list[ScheduledStep], now: dt.datetime, result: PassResult
    ) -> None:
        async with self.sessionmaker() as session:
            customer = await session.get(CustomerProjection, customer_id)
            today = local_today(customer, now)
            keep: list[tuple[ScheduledStep, InvoiceProjection]] = []
            specs: dict[str, PolicySpec] = {}
            for row in steps:
                invoice = await session.get(InvoiceProjection, row.invoice_id)
                if row.policy_id not in specs:
                    specs[row.policy_id] = await spec_of(session, row.policy_id)
                spec = specs[row.policy_id]
                if invoice is None or invoice.status in CLOSED or invoice.balance == 0:
                    await self._finish([row], "cancelled", "invoice is closed")
                    result.cancelled += 1
                elif customer is not None and not in_send_window(
                    now,
                    window=spec.send_window,
                    timezone=customer.timezone,
                    country=customer.country,
                    skip_holidays=spec.skip_holidays,
                ):
                    # Due, but the customer's send window is closed (after downtime, or a
                    # claim retried late): wait for its next opening instead of sending.
                    opening = next_window_opening(
                        now,
                        window=spec.send_window,
                        timezone=customer.timezone,
                        country=customer.country,
                        skip_holidays=spec.skip_holidays,
                    )
                    await self._defer(row, opening, customer.timezone)
                    result.deferred += 1
                elif (
                    # a payment in transit is held by its in_transit pause (which lapses
                    # after 7 days), not by `invoice.in_transit`, which only a reversal resets
                    invoice.disputed
                    or await active_pauses(
                        session, invoice_id=invoice.id, customer_id=customer_id, today=today
                    )
                ):
                    await self._release([row], now + self.retry_after, "paused")
                    result.deferred += 1
                else:
                    keep.append((row, invoice))
        if not keep or customer is None:
            return
        balances: dict[str, int] | None = None
        if self.last_look is not None:
            try:
                balances = await self.last_look.open_balances(customer_id)
            except Exception as exc:  # unreachable invoice service: never send blind
                log.warning("last look failed for %s: %s", customer_id, exc)
                await self._release([r for r, _ in keep], now + self.retry_after, "last look")
                result.deferred += len(keep)
                return
            for row, invoice in list(keep):
                if invoice.id not in balances or balances[invoice.id] == 0:
                    await self._finish(
                        [row], "cancelled", "last look: not open at the invoice service"
                    )
                    result.cancelled += 1
                    keep.remove((row, invoice))
        groups: dict[dt.date, list[tuple[ScheduledStep, InvoiceProjection]]] = defaultdict(list)
        for row, invoice in keep:
            groups[row.local_date].append((row, invoice))
        for local_date, group in groups.items():
            await self._emit(customer, local_date, group, balances, now, result)

    async def _emit(
        self,
        customer: CustomerProjection,
        local_date: dt.date,
        group: list[tuple[ScheduledStep, InvoiceProjection]],
        balances: dict[str, int] | None,
        now: dt.datetime,
        result: PassResult,
    ) -> None:
        """One notice for the customer's day: rows, notice and events in one transaction."""
        async with self.sessionmaker() as session, session.begin():
            held = set(
                (
                    await session.scalars(
                        update(ScheduledStep)
                        .where(
                            col(ScheduledStep.id).in_([r.id for r, _ in group]),
                            col(ScheduledStep.status) == "claimed",
                            col(ScheduledStep.claimed_by) == self.name,
                        )
                        .values(
                            status="emitted", emitted_at=now, lease_until=None, updated_at=utcnow()
                        )
                        .returning(col(ScheduledStep.id))
                    )
                ).all()
            )
            group = [(r, i) for r, i in group if r.id in held]
            if not group:
                return
            lead, _ = max(group, key=lambda g: g[0].step_index)
            notice_id = await session.scalar(
                text(
                    "INSERT INTO notice (id, customer_id, local_date, step_key, invoice_ids, "
                    "created_at) VALUES (:id, :c, :d, :k, CAST(:inv AS jsonb), now()) "
                    "ON CONFLICT (customer_id, local_date, step_key) DO NOTHING RETURNING id"
                ),
                {
                    "id": new_id("ntc"),
                    "c": customer.id,
                    "d": local_date,
                    "k": lead.step_key,
                    "inv": _json([i.id for _, i in group]),
                },
            )
            if notice_id is None:  # another worker (or an earlier try) sent this notice
                await session.execute(
                    update(ScheduledStep)
                    .where(col(ScheduledStep.id).in_(list(held)))
                    .values(status="skipped", note="notice already sent today", emitted_at=None)
                )
                result.skipped += len(group)
                return
            await session.execute(
                update(ScheduledStep)
                .where(col(ScheduledStep.id).in_(list(held)))
                .values(notice_id=notice_id)
            )
            spec = await spec_of(session, lead.policy_id)
            steps = {s.key: s for s in spec.steps}
            lead_step = steps.get(lead.step_key)
            reminders: list[ReminderInvoice] = []
            total_fees = 0
            for row, invoice in sorted(group, key=lambda g: g[1].number):
                balance = balances.get(invoice.id, invoice.balance) if balances else invoice.balance
                fee = row.fee_amount + row.interest_amount
                total_fees += fee
                reminders.append(
                    ReminderInvoice(
                        invoice_id=invoice.id,
                        number=invoice.number,
                        due_date=invoice.due_date,
                        balance=balance,
                        currency=invoice.currency,
                        days_overdue=(local_date - invoice.due_date).days,
                        fee_amount=fee,
                    )
                )
                for kind, amount in (
                    ("late_fee", row.fee_amount),
                    ("interest", row.interest_amount),
                ):
                    if amount:
                        await OUTBOX.add(
                            session,
                            FeeAssessed(
                                customer_id=customer.id,
                                fee_id=f"{invoice.id}:{row.step_key}:{kind}",
                                invoice_id=invoice.id,
                                kind=kind,
                                amount=amount,
                                currency=invoice.currency,
                                step_key=row.step_key,
                                reason=row.reason,
                                assessed_on=local_date,
                            ),
                        )
            await OUTBOX.add(
                session,
                ReminderDue(
                    customer_id=customer.id,
                    notice_id=notice_id,
                    step_key=lead.step_key,
                    step_index=lead.step_index,
                    channel=lead.channel,
                    template=lead_step.template if lead_step else "reminder_overdue",
                    tone=lead_step.tone if lead_step else "neutral",
                    local_date=local_date,
                    send_at=lead.send_at,
                    recipient_roles=customer.contact_roles or ["billing"],
                    invoices=reminders,
                    currency=customer.currency,
                    total_balance=sum(r.balance for r in reminders),
                    total_fees=total_fees,
                    policy_id=lead.policy_id,
                    policy_version=lead.policy_version,
                ),
            )
            await self._consequences(session, customer, lead_step, now, local_date)
            result.emitted += len(group)
            result.notices.append(notice_id)

    async def _consequences(
        self,
        session: AsyncSession,
        customer: CustomerProjection,
        step: Step | None,
        now: dt.datetime,
        today: dt.date,
    ) -> None:
        if step is None:
            return
        if step.credit_hold:
            await place_hold(
                session,
                customer.id,
                reason=f"step {step.key!r} of the dunning policy",
                automatic=True,
                now=now,
                today=today,
            )
        elif step.tone == "final":
            await escalate(session, customer.id, "final_notice", f"step {step.key!r}", now)
        elif step.offset_days > 0:
            await escalate(session, customer.id, "reminded", f"step {step.key!r}", now)

    async def _finish(self, rows: list[ScheduledStep], status: str, note: str) -> None:
        async with self.sessionmaker() as session, session.begin():
            await session.execute(
                update(ScheduledStep)
                .where(
                    col(ScheduledStep.id).in_([r.id for r in rows]),
                    col(ScheduledStep.status) == "claimed",
                    col(ScheduledStep.claimed_by) == self.name,
                )
                .values(status=status, note=note, lease_until=None, updated_at=utcnow())
            )

    async def _defer(self, row: ScheduledStep, opening: dt.datetime, timezone: str) -> None:
        """Back to pending, to be sent at the send window's next `opening` (and on that day)."""
        async with self.sessionmaker() as session, session.begin():
            await session.execute(
                update(ScheduledStep)
                .where(
                    col(ScheduledStep.id) == row.id,
                    col(ScheduledStep.status) == "claimed",
                    col(ScheduledStep.claimed_by) == self.name,
                )
                .values(
                    status="pending",
                    send_at=opening,
                    local_date=opening.astimezone(ZoneInfo(timezone)).date(),
                    claimed_by=None,
                    lease_until=None,
                    note=f"outside the send window; deferred to {opening.isoformat()}",
                    updated_at=utcnow(),
                )
            )

    async def _release(self, rows: list[ScheduledStep], until: dt.datetime, note: str) -> None:
        """Back to pending, not to be claimed again before `until` (paused, last look down)."""
        async with self.sessionmaker() as session, session.begin():
            await session.execute(
                update(ScheduledStep)
                .where(
                    col(ScheduledStep.id).in_([r.id for r in rows]),
                    col(ScheduledStep.status) == "claimed",
                    col(ScheduledStep.claimed_by) == self.name,
                )
                .values(
                    status="pending",
                    claimed_by=None,
                    lease_until=until,
                    note=note,
                    updated_at=utcnow(),
                )
            )

    async def settle_promises(self, now: dt.datetime) -> None:
        """Promises whose date passed unpaid are broken; dunning resumes at the next step."""
        async with self.sessionmaker() as session, session.begin():
            due = (
                await session.scalars(
                    select(Promise)
                    .where(col(Promise.status) == "open", col(Promise.promised_date) < now.date())
                    .with_for_update(skip_locked=True)
                )
            ).all()
            for promise in due:
                customer = await session.get(CustomerProjection, promise.customer_id)
                if promise.promised_date >= local_today(customer, now):
                    continue
                promise.status, promise.resolved_at = "broken", now
                await OUTBOX.add(
                    session,
                    PromiseBroken(
                        customer_id=promise.customer_id,
                        promise_id=promise.id,
                        invoice_ids=promise.invoice_ids,
                        amount=promise.amount,
                        paid=promise.paid,
                        currency=promise.currency,
                        promised_date=promise.promised_date,
                    ),
                )
                await lift_pauses(session, kind="promise", ref=promise.id)
                for invoice_id in promise.invoice_ids:
                    await recompute(session, invoice_id, now)

    async def lift_expired_pauses(self, now: dt.datetime) -> None:
        async with self.sessionmaker() as session, session.begin():
            lifted = (
                await session.scalars(
                    update(Pause)
                    .where(col(Pause.lifted_at).is_(None), col(Pause.resume_on) <= now.date())
                    .values(lifted_at=now)
                    .returning(Pause)
                )
            ).all()
            for pause in lifted:
                invoice_ids = [pause.invoice_id] if pause.invoice_id else []
                if pause.customer_id and not pause.invoice_id:
                    invoice_ids = list(
                        (
                            await session.scalars(
                                select(InvoiceProjection.id).where(
                                    col(InvoiceProjection.customer_id) == pause.customer_id
                                )
                            )
                        ).all()
                    )
                for invoice_id in invoice_ids:
                    await recompute(session, invoice_id, now)


def _json(value: object) -> str:
    return json.dumps(value)
