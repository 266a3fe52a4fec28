"""The due-work loop: claim whole customers' due steps (SKIP LOCKED + lease), check, emit once.

Safe with several replicas. A pass:
1. claims, in its own short transaction, up to `batch` customers with due work and ALL their
   due rows (pending and due, or claimed with an expired lease: a killed worker's claim is
   retried). A customer is taken by one scheduler at a time (a transaction-level advisory
   lock while claiming), so a customer's due rows for a day are never split across batches:
   one notice per customer and day lists every invoice due that day;
2. keeps only each invoice's latest claimed step (catch-up: the older ones are skipped);
3. re-checks each invoice against the projection (closed, paused, disputed, in transit),
   the customer's send window at this very instant (outside it, the step goes back to
   pending with its send_at moved to the window's next opening: after downtime or a late
   lease retry nothing goes out at night or on a weekend) and the invoice service's last
   look (for the whole batch at once, a few customers concurrently), cancelling what may
   not go out;
4. in ONE transaction for the batch: marks the rows emitted (only those this worker still
   holds), inserts the notices (unique per customer, day and step: a notice already there
   means another worker sent it; rows of ours it does not list are moved to the next send
   window, never skipped), stages ReminderDue, FeeAssessed and any stage change or credit
   hold in the outbox.
Then it settles promises whose date passed and lifts pauses whose resume date passed.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import os
import socket
import time
from collections import defaultdict
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

from duewise_events import heartbeat
from duewise_events.catalogue import (
    DunningStageChanged,
    Event,
    FeeAssessed,
    PromiseBroken,
    ReminderDue,
    ReminderInvoice,
)
from duewise_events.tracing import context_from, current_trace_headers, tracer
from duewise_service.metrics import SECONDS_BUCKETS
from opentelemetry import metrics, trace
from sqlalchemy import or_, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlmodel import col, select

from dunning.clock import Clock
from dunning.domain.plan import in_send_window, next_window_opening
from dunning.domain.policy import DEFAULT_POLICY, PolicySpec, Step
from dunning.handlers import lift_pauses, local_today
from dunning.lastlook import LastLook
from dunning.models import (
    OUTBOX,
    CustomerProjection,
    CustomerStage,
    InvoiceProjection,
    Notice,
    Pause,
    Policy,
    Promise,
    ScheduledStep,
    new_id,
    utcnow,
)
from dunning.service.holds import RANK, Stage, place_hold
from dunning.service.schedule import BUILTIN_POLICY_ID, CLOSED, recompute

log = logging.getLogger("dunning.scheduler")

_meter = metrics.get_meter("dunning.scheduler")
REMINDERS_DUE = _meter.create_counter(
    "duewise_reminders_due", unit="{step}", description="Due steps the scheduler claimed"
)
REMINDERS_EMITTED = _meter.create_counter(
    "duewise_reminders_emitted", unit="{step}", description="Steps emitted in a notice"
)
REMINDERS_SKIPPED = _meter.create_counter(
    "duewise_reminders_skipped",
    unit="{step}",
    description="Due steps not emitted in this pass, by reason: cancelled (superseded, "
    "invoice_closed, not_open_at_invoice_service) or put back (outside_send_window, paused, "
    "last_look_unavailable, notice_already_sent)",
)
PASS_DURATION = _meter.create_histogram(
    "duewise_scheduler_pass_duration",
    unit="s",
    description="Duration of one scheduler pass",
    explicit_bucket_boundaries_advisory=SECONDS_BUCKETS,
)

#: Namespace of the advisory locks that give one customer to one claiming scheduler.
CLAIM_LOCK_NS = 0x0D0E_2003

# Customers with due work, oldest first: two arms, each on its own partial index (pending and
# due on ix_scheduled_step_due, claimed with an expired lease on ix_scheduled_step_lease). A
# customer another scheduler is claiming right now (its advisory lock is held) is passed over.
_PICK = text(
    """
    SELECT customer_id FROM (
        SELECT customer_id, min(first) AS first FROM (
            (SELECT customer_id, lease_until AS first FROM scheduled_step
             WHERE status = 'claimed' AND lease_until < :now
             ORDER BY lease_until LIMIT :scan)
            UNION ALL
            (SELECT customer_id, send_at AS first FROM scheduled_step
             WHERE status = 'pending' AND send_at <= :now
               AND (lease_until IS NULL OR lease_until <= :now)
             ORDER BY send_at LIMIT :scan)
        ) AS due
        GROUP BY customer_id
        ORDER BY min(first)
        OFFSET 0
    ) AS candidates
    WHERE pg_try_advisory_xact_lock(CAST(:ns AS integer), hashtext(customer_id))
    LIMIT :n
    """
)
# ALL the due rows of the picked customers (every local day: catch-up sees them together).
_CLAIM = text(
    """
    UPDATE scheduled_step SET status = 'claimed', lease_until = :lease_until,
           claimed_by = :me, updated_at = now()
    WHERE id IN (
        SELECT id FROM scheduled_step
        WHERE customer_id = ANY(CAST(:customers AS text[]))
          AND ((status = 'pending' AND send_at <= :now
                AND (lease_until IS NULL OR lease_until <= :now))
               OR (status = 'claimed' AND lease_until < :now))
        FOR UPDATE SKIP LOCKED)
    RETURNING id
    """
)
_SET_NOTICE = text(
    """
    UPDATE scheduled_step AS s SET notice_id = v.notice_id
    FROM unnest(CAST(:ids AS bigint[]), CAST(:notices AS text[])) AS v(id, notice_id)
    WHERE s.id = v.id
    """
)
_MOVE = text(
    """
    UPDATE scheduled_step SET status = 'pending', send_at = :send_at, local_date = :local_date,
           claimed_by = NULL, lease_until = NULL, emitted_at = NULL, note = :note,
           updated_at = now()
    WHERE id = :id AND claimed_by = :me AND status IN ('claimed', 'emitted')
    """
)

Item = tuple[ScheduledStep, InvoiceProjection]


@dataclass
class PassResult:
    claimed: int = 0
    customers: int = 0
    emitted: int = 0
    notices: list[str] = field(default_factory=list)
    cancelled: int = 0
    skipped: int = 0
    deferred: int = 0


@dataclass
class _Group:
    """One customer-day's notice in the making."""

    customer: CustomerProjection
    local_date: dt.date
    items: list[Item]
    balances: dict[str, int] | None


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
        last_look_concurrency: int = 8,
    ) -> None:
        self.sessionmaker = sessionmaker
        self.clock = clock
        self.last_look = last_look
        self.name = name or f"{socket.gethostname()}:{os.getpid()}:{id(self):x}"
        self.lease = lease
        self.batch = batch
        self.retry_after = retry_after
        self.last_look_concurrency = last_look_concurrency
        # Fault tests set this to hold the worker between "claim committed" and "emitted",
        # so that it can be killed exactly there. Never set in production.
        self.pause_after_claim_s = pause_after_claim_s
        #: Policy specs by (id, version): a version's spec never changes.
        self._specs: dict[tuple[str, int], PolicySpec] = {}

    async def run(self, stop: asyncio.Event, interval_s: float = 1.0) -> None:
        while not stop.is_set():
            heartbeat.beat()
            full = False
            started = time.perf_counter()
            try:
                async with self.sessionmaker() as session, session.begin():
                    await self.clock.load(session)
                result = await self.run_once()
                full = result.customers >= self.batch
                heartbeat.set_ready(True)
            except Exception:
                log.exception("scheduler pass failed")
                heartbeat.set_ready(False, "the last scheduler pass failed")
            PASS_DURATION.record(time.perf_counter() - started)
            if full:  # more is due right now: no sleep
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), interval_s)

    async def claim(self, now: dt.datetime) -> list[int]:
        """Claim due rows for this worker (committed at once, so the lease protects them)."""
        return (await self._claim(now))[1]

    async def _claim(self, now: dt.datetime) -> tuple[list[str], list[int]]:
        """(customers, row ids): up to `batch` customers, with all their due rows."""
        async with self.sessionmaker() as session, session.begin():
            customers = list(
                (
                    await session.scalars(
                        _PICK,
                        {"now": now, "scan": self.batch * 4, "n": self.batch, "ns": CLAIM_LOCK_NS},
                    )
                ).all()
            )
            if not customers:
                return [], []
            result = await session.execute(
                _CLAIM,
                {
                    "now": now,
                    "lease_until": now + self.lease,
                    "me": self.name,
                    "customers": customers,
                },
            )
            return customers, [int(r[0]) for r in result]

    async def run_once(self) -> PassResult:
        now = self.clock.now()
        result = PassResult()
        await self.settle_promises(now)
        await self.lift_expired_pauses(now)
        customers, ids = await self._claim(now)
        result.claimed, result.customers = len(ids), len(customers)
        REMINDERS_DUE.add(len(ids))
        if ids and self.pause_after_claim_s:
            log.warning(
                "fault hook: pausing %.1fs after claiming %s", self.pause_after_claim_s, ids
            )
            await asyncio.sleep(self.pause_after_claim_s)
        if ids:
            await self.process(ids, now, result)
        return result

    # --- one claimed batch ----------------------------------------------------------------

    async def process(self, ids: list[int], now: dt.datetime, result: PassResult) -> None:
        async with self.sessionmaker() as session:
            loaded = (
                await session.execute(
                    select(ScheduledStep, InvoiceProjection, CustomerProjection)
                    .outerjoin(
                        InvoiceProjection,
                        col(InvoiceProjection.id) == col(ScheduledStep.invoice_id),
                    )
                    .outerjoin(
                        CustomerProjection,
                        col(CustomerProjection.id) == col(ScheduledStep.customer_id),
                    )
                    .where(col(ScheduledStep.id).in_(ids))
                    .order_by(col(ScheduledStep.step_index))
                )
            ).all()
            customers: dict[str, CustomerProjection | None] = {}
            invoices: dict[str, InvoiceProjection | None] = {}
            by_invoice: dict[str, list[ScheduledStep]] = defaultdict(list)
            for row, invoice, customer in loaded:
                customers[row.customer_id] = customer
                invoices[row.invoice_id] = invoice
                by_invoice[row.invoice_id].append(row)
            latest: list[ScheduledStep] = []
            older: list[ScheduledStep] = []
            for steps in by_invoice.values():
                *before, last = steps
                latest.append(last)
                older.extend(before)
            specs = await self._specs_for(session, latest)
            pauses = await self._pauses_for(session, list(invoices), list(customers))
        if older:
            await self._finish(older, "skipped", "superseded by a later step (catch-up)")
            result.skipped += len(older)
            REMINDERS_SKIPPED.add(len(older), {"reason": "superseded"})

        closed: list[ScheduledStep] = []
        paused: list[ScheduledStep] = []
        keep: dict[str, list[Item]] = defaultdict(list)
        for row in latest:
            invoice, customer = invoices[row.invoice_id], customers[row.customer_id]
            spec = specs[(row.policy_id, row.policy_version)]
            if invoice is None or invoice.status in CLOSED or invoice.balance == 0:
                closed.append(row)
            elif customer is None:
                paused.append(row)  # not projected yet: try again later
            elif not in_send_window(
                now,
                window=spec.send_window,
                timezone=customer.timezone,
                country=customer.country,
                skip_holidays=spec.skip_holidays,
            ):
                # Due, but the customer's send window is closed (after downtime, or a claim
                # retried late): wait for its next opening instead of sending.
                opening = next_window_opening(
                    now,
                    window=spec.send_window,
                    timezone=customer.timezone,
                    country=customer.country,
                    skip_holidays=spec.skip_holidays,
                )
                await self._defer(row, opening, customer.timezone)
                result.deferred += 1
                REMINDERS_SKIPPED.add(1, {"reason": "outside_send_window"})
            elif (
                # a payment in transit is held by its in_transit pause (which lapses after 7
                # days), not by `invoice.in_transit`, which only a reversal resets
                invoice.disputed
                or _paused(pauses, invoice.id, customer.id, local_today(customer, now))
            ):
                paused.append(row)
            else:
                keep[customer.id].append((row, invoice))
        if closed:
            await self._finish(closed, "cancelled", "invoice is closed")
            result.cancelled += len(closed)
            REMINDERS_SKIPPED.add(len(closed), {"reason": "invoice_closed"})
        if paused:
            await self._release(paused, now + self.retry_after, "paused")
            result.deferred += len(paused)
            REMINDERS_SKIPPED.add(len(paused), {"reason": "paused"})
        if not keep:
            return

        heartbeat.beat()  # a long pass is work going on, not a stuck loop
        balances = await self._last_look(list(keep))
        groups: dict[tuple[str, dt.date], _Group] = {}
        unreachable: list[ScheduledStep] = []
        not_open: list[ScheduledStep] = []
        for customer_id, items in keep.items():
            customer = customers[customer_id]
            assert customer is not None
            found = balances.get(customer_id) if self.last_look is not None else None
            if isinstance(found, BaseException):  # unreachable invoice service: never send blind
                log.warning("last look failed for %s: %s", customer_id, found)
                unreachable.extend(r for r, _ in items)
                continue
            for row, invoice in items:
                if found is not None and found.get(invoice.id, 0) == 0:
                    not_open.append(row)
                    continue
                group = groups.get((customer_id, row.local_date))
                if group is None:
                    group = groups[(customer_id, row.local_date)] = _Group(
                        customer, row.local_date, [], found
                    )
                group.items.append((row, invoice))
        if unreachable:
            await self._release(unreachable, now + self.retry_after, "last look")
            result.deferred += len(unreachable)
            REMINDERS_SKIPPED.add(len(unreachable), {"reason": "last_look_unavailable"})
        if not_open:
            await self._finish(not_open, "cancelled", "last look: not open at the invoice service")
            result.cancelled += len(not_open)
            REMINDERS_SKIPPED.add(len(not_open), {"reason": "not_open_at_invoice_service"})
        if groups:
            heartbeat.beat()
            await self._emit(list(groups.values()), specs, now, result)

    async def _specs_for(
        self, session: AsyncSession, rows: list[ScheduledStep]
    ) -> dict[tuple[str, int], PolicySpec]:
        """The spec each row was planned from; stored policies read once per version."""
        wanted = {(r.policy_id, r.policy_version) for r in rows}
        specs: dict[tuple[str, int], PolicySpec] = {}
        missing: set[str] = set()
        for key in wanted:
            if key[0] == BUILTIN_POLICY_ID:
                specs[key] = DEFAULT_POLICY
            elif key in self._specs:
                specs[key] = self._specs[key]
            else:
                missing.add(key[0])
        if missing:
            stored = {
                p.id: p
                for p in (
                    await session.scalars(select(Policy).where(col(Policy.id).in_(missing)))
                ).all()
            }
            for key in wanted - specs.keys():
                policy = stored.get(key[0])
                if policy is None:  # as spec_of: a row whose policy is gone uses the default
                    specs[key] = DEFAULT_POLICY
                    continue
                spec = PolicySpec.model_validate(policy.spec)
                self._specs[(policy.id, policy.version)] = spec
                specs[key] = spec  # the current version's, as spec_of (planned from an older)
        return specs

    async def _pauses_for(
        self, session: AsyncSession, invoice_ids: list[str], customer_ids: list[str]
    ) -> list[Pause]:
        """Every unlifted pause of the batch's invoices or customers (dates checked later)."""
        return list(
            (
                await session.scalars(
                    select(Pause).where(
                        col(Pause.lifted_at).is_(None),
                        or_(
                            col(Pause.invoice_id).in_(invoice_ids),
                            col(Pause.customer_id).in_(customer_ids),
                        ),
                    )
                )
            ).all()
        )

    async def _last_look(
        self, customer_ids: list[str]
    ) -> dict[str, dict[str, int] | BaseException]:
        """customer -> open balances at the invoice service (or the error), a few at a time."""
        if self.last_look is None:
            return {}
        look = self.last_look
        gate = asyncio.Semaphore(self.last_look_concurrency)

        async def one(customer_id: str) -> dict[str, int]:
            async with gate:
                return await look.open_balances(customer_id)

        answers = await asyncio.gather(*(one(c) for c in customer_ids), return_exceptions=True)
        return dict(zip(customer_ids, answers, strict=True))

    async def _emit(
        self,
        groups: list[_Group],
        specs: dict[tuple[str, int], PolicySpec],
        now: dt.datetime,
        result: PassResult,
    ) -> None:
        """The batch's notices: rows, notices and events in one transaction."""
        async with self.sessionmaker() as session, session.begin():
            held = set(
                (
                    await session.scalars(
                        update(ScheduledStep)
                        .where(
                            col(ScheduledStep.id).in_([r.id for g in groups for r, _ in g.items]),
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
            for g in groups:
                g.items = [(r, i) for r, i in g.items if r.id in held]
            groups = [g for g in groups if g.items]
            if not groups:
                return
            leads = {id(g): max(g.items, key=lambda item: item[0].step_index)[0] for g in groups}
            wanted = {id(g): new_id("ntc") for g in groups}
            created: set[str] = set()
            for chunk in _chunks(groups, 1000):
                created.update(
                    (
                        await session.scalars(
                            pg_insert(Notice)
                            .values(
                                [
                                    {
                                        "id": wanted[id(g)],
                                        "customer_id": g.customer.id,
                                        "local_date": g.local_date,
                                        "step_key": leads[id(g)].step_key,
                                        "invoice_ids": [i.id for _, i in g.items],
                                        "created_at": now,
                                    }
                                    for g in chunk
                                ]
                            )
                            .on_conflict_do_nothing(
                                index_elements=["customer_id", "local_date", "step_key"]
                            )
                            .returning(col(Notice.id))
                        )
                    ).all()
                )
            sent = [g for g in groups if wanted[id(g)] in created]
            clashed = [g for g in groups if wanted[id(g)] not in created]
            if clashed:
                # Another worker already sent this customer-day's notice for this step, and it
                # does not list these invoices (the ones it listed were its rows, not ours):
                # never skip them, remind them in the next send window.
                await self._move_to_next_window(session, clashed, specs, now, result)
            if not sent:
                return
            await session.execute(
                _SET_NOTICE,
                {
                    "ids": [r.id for g in sent for r, _ in g.items],
                    "notices": [wanted[id(g)] for g in sent for _ in g.items],
                },
            )
            stages = await self._stages(session, sorted({g.customer.id for g in sent}))
            events: list[Event] = []
            traceparents: list[str | None] = []
            holds: list[tuple[str, Step, dt.date]] = []
            for g in sent:
                notice_id, lead, customer = wanted[id(g)], leads[id(g)], g.customer
                first_event = len(events)
                spec = specs[(lead.policy_id, lead.policy_version)]
                lead_step = next((s for s in spec.steps if s.key == lead.step_key), None)
                reminders: list[ReminderInvoice] = []
                total_fees = 0
                for row, invoice in sorted(g.items, key=lambda item: item[1].number):
                    balance = (
                        g.balances.get(invoice.id, invoice.balance)
                        if g.balances
                        else invoice.balance
                    )
                    fee = row.fee_amount + row.interest_amount
                    total_fees += fee
                    reminders.append(
                        ReminderInvoice(
                            invoice_id=invoice.id,
                            number=invoice.number,
                            due_date=invoice.due_date,
                            balance=balance,
                            currency=invoice.currency,
                            days_overdue=(g.local_date - invoice.due_date).days,
                            fee_amount=fee,
                        )
                    )
                    for kind, amount in (
                        ("late_fee", row.fee_amount),
                        ("interest", row.interest_amount),
                    ):
                        if amount:
                            events.append(
                                FeeAssessed(
                                    customer_id=customer.id,
                                    fee_id=f"{invoice.id}:{row.step_key}:{kind}",
                                    invoice_id=invoice.id,
                                    kind=kind,
                                    amount=amount,
                                    currency=invoice.currency,
                                    step_key=row.step_key,
                                    reason=row.reason,
                                    assessed_on=g.local_date,
                                )
                            )
                events.append(
                    ReminderDue(
                        customer_id=customer.id,
                        notice_id=notice_id,
                        step_key=lead.step_key,
                        step_index=lead.step_index,
                        channel=lead.channel,
                        template=lead_step.template if lead_step else "reminder_overdue",
                        tone=lead_step.tone if lead_step else "neutral",
                        local_date=g.local_date,
                        send_at=lead.send_at,
                        recipient_roles=customer.contact_roles or ["billing"],
                        invoices=reminders,
                        currency=customer.currency,
                        total_balance=sum(r.balance for r in reminders),
                        total_fees=total_fees,
                        policy_id=lead.policy_id,
                        policy_version=lead.policy_version,
                    )
                )
                if lead_step is None:
                    pass
                elif lead_step.credit_hold:
                    holds.append((customer.id, lead_step, g.local_date))
                elif lead_step.tone == "final":
                    _escalate(stages[customer.id], "final_notice", lead_step, now, events)
                elif lead_step.offset_days > 0:
                    _escalate(stages[customer.id], "reminded", lead_step, now, events)
                result.emitted += len(g.items)
                result.notices.append(notice_id)
                REMINDERS_EMITTED.add(len(g.items))
                traceparents += [_notice_trace(g, notice_id, lead)] * (len(events) - first_event)
            await OUTBOX.add_many(session, events, traceparents=traceparents)
            for customer_id, step, today in holds:  # rare: one at a time, after the notices
                await place_hold(
                    session,
                    customer_id,
                    reason=f"step {step.key!r} of the dunning policy",
                    automatic=True,
                    now=now,
                    today=today,
                )

    async def _stages(
        self, session: AsyncSession, customer_ids: list[str]
    ) -> dict[str, CustomerStage]:
        """The customers' stage rows, locked (in id order), created where missing."""
        stages = {
            s.customer_id: s
            for s in (
                await session.scalars(
                    select(CustomerStage)
                    .where(col(CustomerStage.customer_id).in_(customer_ids))
                    .order_by(col(CustomerStage.customer_id))
                    .with_for_update()
                )
            ).all()
        }
        missing = [c for c in customer_ids if c not in stages]
        if missing:
            await session.execute(
                pg_insert(CustomerStage)
                .values([{"customer_id": c, "stage": "current", "on_hold": False} for c in missing])
                .on_conflict_do_nothing()
            )
            for s in (
                await session.scalars(
                    select(CustomerStage)
                    .where(col(CustomerStage.customer_id).in_(missing))
                    .order_by(col(CustomerStage.customer_id))
                    .with_for_update()
                )
            ).all():
                stages[s.customer_id] = s
        return stages

    async def _move_to_next_window(
        self,
        session: AsyncSession,
        groups: list[_Group],
        specs: dict[tuple[str, int], PolicySpec],
        now: dt.datetime,
        result: PassResult,
    ) -> None:
        params: list[dict[str, object]] = []
        for g in groups:
            for row, _ in g.items:
                spec = specs[(row.policy_id, row.policy_version)]
                opening = next_window_opening(
                    now,
                    window=spec.send_window,
                    timezone=g.customer.timezone,
                    country=g.customer.country,
                    skip_holidays=spec.skip_holidays,
                )
                params.append(
                    {
                        "id": row.id,
                        "me": self.name,
                        "send_at": opening,
                        "local_date": opening.astimezone(ZoneInfo(g.customer.timezone)).date(),
                        "note": f"a {row.step_key} notice for {g.local_date} was already sent; "
                        f"moved to {opening.isoformat()}",
                    }
                )
        await session.execute(_MOVE, params)
        result.deferred += len(params)
        REMINDERS_SKIPPED.add(len(params), {"reason": "notice_already_sent"})

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


def _paused(pauses: list[Pause], invoice_id: str, customer_id: str, today: dt.date) -> bool:
    """Whether a pause is in force for the invoice or its customer on `today`."""
    return any(
        (p.invoice_id == invoice_id or p.customer_id == customer_id)
        and (p.resume_on is None or p.resume_on > today)
        for p in pauses
    )


def _escalate(
    row: CustomerStage, to: Stage, step: Step, now: dt.datetime, events: list[Event]
) -> None:
    """As holds.escalate, on a row already locked, with the event added to `events`."""
    if RANK[to] > RANK[row.stage]:
        events.append(
            DunningStageChanged(
                customer_id=row.customer_id,
                from_stage=row.stage,
                to_stage=to,
                reason=f"step {step.key!r}",
                changed_at=now,
            )
        )
        row.stage, row.updated_at = to, now


def _notice_trace(group: _Group, notice_id: str, lead: ScheduledStep) -> str | None:
    """A span for the notice in the trace of the event that planned its lead step (linked
    to the other invoices' traces); its traceparent goes on the notice's outbox rows, so
    one invoice's trace runs on into the reminder, notify and the SMTP send."""
    stored = [r.traceparent for r, _ in group.items if r.traceparent]
    parent = lead.traceparent or (stored[0] if stored else None)
    links = [
        trace.Link(span_context)
        for tp in dict.fromkeys(stored)
        if tp != parent
        and (span_context := trace.get_current_span(context_from(tp)).get_span_context()).is_valid
    ]
    span = tracer.start_span(
        "dunning reminder due",
        context=context_from(parent),
        links=links,
        attributes={
            "dunning.notice_id": notice_id,
            "dunning.step_key": lead.step_key,
            "dunning.invoice_count": len(group.items),
        },
    )
    with trace.use_span(span, end_on_exit=True):
        return current_trace_headers().get("traceparent")


def _chunks(items: list[_Group], size: int) -> list[list[_Group]]:
    return [items[i : i + size] for i in range(0, len(items), size)]
