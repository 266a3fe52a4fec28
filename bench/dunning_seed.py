"""Seed the dunning database as if it had consumed InvoiceIssued for every invoice, by COPY.

Customers `cus_b0000000…`, each in one of several time zones (all inside the default send
window at the default bench instant), with invoices `inv_b00000000…` spread round-robin over
them. Due dates are uniform over `span_days` days around "today", so that
7 steps x invoices / span_days steps fall due today (about 50,000 with the defaults).

Every scheduled_step row comes from the service's own `plan()` (default policy, the built-in
policy id the service stamps): plans are computed once per distinct (due date, zone) with a
sentinel balance, then the only balance-dependent part (the late fee's reason text) is filled
in per invoice. Steps on an earlier local day than "today" are `emitted` (a scheduler ran
every day before), the rest `pending`; each customer's dunning stage is what those emitted
steps made it. A sample is then read back from the database and compared with `plan()`.
"""

from __future__ import annotations

import datetime as dt
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

import asyncpg
from dunning.domain.fees import late_fee
from dunning.domain.plan import InvoiceFacts, PlannedStep, plan
from dunning.domain.policy import DEFAULT_POLICY
from dunning.service.schedule import BUILTIN_POLICY_ID

#: (IANA zone, country, currency): all between 09:00 and 17:00 local at 15:30 UTC in November.
ZONES: tuple[tuple[str, str, str], ...] = (
    ("Europe/London", "GB", "GBP"),
    ("Europe/Berlin", "DE", "EUR"),
    ("Europe/Paris", "FR", "EUR"),
    ("Europe/Madrid", "ES", "EUR"),
    ("America/New_York", "US", "USD"),
    ("America/Chicago", "US", "USD"),
    ("America/Sao_Paulo", "BR", "BRL"),
)
#: A Wednesday: no public holiday in any of ZONES' countries on that day.
DEFAULT_AT = dt.datetime(2026, 11, 25, 15, 30, tzinfo=dt.UTC)
POLICY_SUFFIX = "; policy the built-in default policy"  # ResolvedPolicy.why of the built-in
_SENTINEL = 987_654_321_987  # a balance that appears nowhere else in a reason text
_STEP_COLUMNS = (
    "invoice_id", "customer_id", "step_key", "step_index", "send_at", "local_date", "status",
    "lease_until", "claimed_by", "policy_id", "policy_version", "channel", "fee_amount",
    "interest_amount", "reason", "note", "notice_id", "emitted_at", "updated_at",
)  # fmt: skip
_INVOICE_COLUMNS = (
    "id", "customer_id", "number", "kind", "issue_date", "due_date", "total", "balance",
    "currency", "status", "disputed", "in_transit", "last_payment_date", "updated_at",
)  # fmt: skip
_CUSTOMER_COLUMNS = (
    "id", "name", "currency", "timezone", "country", "tags", "contact_roles", "risk_band",
    "updated_at",
)  # fmt: skip
_STAGE_COLUMNS = ("customer_id", "stage", "on_hold", "hold_id", "hold_reason", "updated_at")
_RANK_STAGE = ("current", "reminded", "final_notice", "credit_hold")


def customer_id(c: int) -> str:
    return f"cus_b{c:07d}"


def invoice_id(j: int) -> str:
    return f"inv_b{j:08d}"


@dataclass
class Seeded:
    """What the rest of the bench needs to know about the seeded data."""

    at: dt.datetime
    customers: int
    invoices: int
    steps: int = 0
    due_now: int = 0  # pending steps with send_at <= at
    due_customers: int = 0
    due_fee_steps: int = 0
    emitted_before: int = 0
    seconds: float = 0.0
    copy_seconds: float = 0.0
    analyze_seconds: float = 0.0
    verified: int = 0
    mismatches: list[str] = field(default_factory=list)
    #: invoices whose every step is still pending (due after the bench instant + 8 days)
    future_invoices: list[tuple[str, str, int, str, dt.date]] = field(default_factory=list)


def _rank(p: PlannedStep) -> int:
    s = p.step
    if s.credit_hold:
        return 3
    if s.tone == "final":
        return 2
    return 1 if s.offset_days > 0 else 0


async def seed(
    dsn: str,
    *,
    customers: int,
    invoices: int,
    at: dt.datetime,
    span_days: int = 140,
    chunk: int = 50_000,
    verify: int = 1_000,
    log: Callable[[str], None] = print,
) -> Seeded:
    t_start = time.perf_counter()
    rng = random.Random(42)
    out = Seeded(at=at, customers=customers, invoices=invoices)
    zones = [ZoneInfo(z) for z, _, _ in ZONES]
    today = [at.astimezone(z).date() for z in zones]  # each zone's local "today"
    lo = -(span_days * 5 // 7)  # mostly overdue, like a real ledger: due dates in the past
    offsets = [rng.randint(lo, lo + span_days - 1) for _ in range(invoices)]
    totals = [rng.randint(5_000, 5_000_000) for _ in range(invoices)]
    plans: dict[tuple[int, int], list[PlannedStep]] = {}
    issued_at = at - dt.timedelta(days=40)

    def plan_for(due: dt.date, z: int) -> list[PlannedStep]:
        key = (due.toordinal(), z)
        got = plans.get(key)
        if got is None:
            tz, country, currency = ZONES[z]
            facts = InvoiceFacts(
                invoice_id="x", customer_id="x", number="x",
                issue_date=due - dt.timedelta(days=30), due_date=due,
                total=_SENTINEL, balance=_SENTINEL, currency=currency,
                timezone=tz, country=country,
            )  # fmt: skip
            got = plans[key] = plan(facts, DEFAULT_POLICY)
        return got

    stage_rank = [0] * customers
    conn = await asyncpg.connect(dsn)
    try:
        log(f"seeding {customers:,} customers")
        t0 = time.perf_counter()
        await conn.copy_records_to_table(
            "customer",
            records=[
                (customer_id(c), f"Bench Customer {c}", ZONES[c % len(ZONES)][2],
                 ZONES[c % len(ZONES)][0], ZONES[c % len(ZONES)][1], "[]", '["billing"]',
                 None, issued_at)
                for c in range(customers)
            ],
            columns=_CUSTOMER_COLUMNS,
        )  # fmt: skip
        copy_s = time.perf_counter() - t0
        due_customers: set[int] = set()
        for start in range(0, invoices, chunk):
            inv_rows: list[tuple[object, ...]] = []
            step_rows: list[tuple[object, ...]] = []
            for j in range(start, min(invoices, start + chunk)):
                c = j % customers
                z = c % len(ZONES)
                due = at.date() + dt.timedelta(days=offsets[j])
                issue = due - dt.timedelta(days=30)
                total = totals[j]
                iid, cid = invoice_id(j), customer_id(c)
                currency = ZONES[z][2]
                inv_rows.append((iid, cid, f"B-{j:08d}", "standard", issue, due, total, total,
                                 currency, "open", False, 0, None, issued_at))  # fmt: skip
                all_pending = True
                for p in plan_for(due, z):
                    fee = late_fee(p.step.fee, total) if p.step.fee else 0
                    reason = p.reason
                    if p.fee_amount:
                        reason = reason.replace(str(p.fee_amount), str(fee)).replace(
                            str(_SENTINEL), str(total)
                        )
                    if p.send_date < today[z]:
                        status, emitted_at, updated = "emitted", p.send_at, p.send_at
                        all_pending = False
                        out.emitted_before += 1
                        stage_rank[c] = max(stage_rank[c], _rank(p))
                    else:
                        status, emitted_at, updated = "pending", None, issued_at
                        if p.send_at <= at:
                            out.due_now += 1
                            due_customers.add(c)
                            out.due_fee_steps += 1 if fee else 0
                    step_rows.append((
                        iid, cid, p.key, p.index, p.send_at, p.send_date, status, None, None,
                        BUILTIN_POLICY_ID, 0, p.step.channel, fee, p.interest_amount,
                        reason + POLICY_SUFFIX, None, None, emitted_at, updated,
                    ))  # fmt: skip
                if all_pending and offsets[j] > 8 and len(out.future_invoices) < 50_000:
                    out.future_invoices.append((iid, cid, total, currency, due))
            t0 = time.perf_counter()
            await conn.copy_records_to_table("invoice", records=inv_rows, columns=_INVOICE_COLUMNS)
            await conn.copy_records_to_table(
                "scheduled_step", records=step_rows, columns=_STEP_COLUMNS
            )
            copy_s += time.perf_counter() - t0
            out.steps += len(step_rows)
            if (start // chunk) % 4 == 3 or start + chunk >= invoices:
                log(f"  {min(invoices, start + chunk):,} invoices, {out.steps:,} steps "
                    f"({time.perf_counter() - t_start:.0f}s)")  # fmt: skip
        hold_reason = "step 'hold_45' of the dunning policy"
        stages = [
            (customer_id(c), _RANK_STAGE[r], r == 3, f"hold_b{c:07d}" if r == 3 else None,
             hold_reason if r == 3 else None, issued_at)
            for c, r in enumerate(stage_rank)
            if r > 0
        ]  # fmt: skip
        t0 = time.perf_counter()
        await conn.copy_records_to_table("customer_stage", records=stages, columns=_STAGE_COLUMNS)
        copy_s += time.perf_counter() - t0
        out.due_customers = len(due_customers)
        log("ANALYZE")
        t0 = time.perf_counter()
        await conn.execute("ANALYZE")
        out.analyze_seconds = time.perf_counter() - t0
        out.copy_seconds = copy_s
        out.verified, out.mismatches = await _verify(conn, rng, invoices, customers, verify)
    finally:
        await conn.close()
    out.seconds = time.perf_counter() - t_start
    return out


async def _verify(
    conn: asyncpg.Connection, rng: random.Random, invoices: int, customers: int, n: int
) -> tuple[int, list[str]]:
    """Read `n` random invoices and their steps back and compare with `plan()` on their facts."""
    sample = [invoice_id(j) for j in rng.sample(range(invoices), min(n, invoices))]
    inv = await conn.fetch(
        "SELECT i.*, c.timezone, c.country FROM invoice i JOIN customer c ON c.id = i.customer_id "
        "WHERE i.id = ANY($1::text[])",
        sample,
    )
    steps = await conn.fetch(
        "SELECT * FROM scheduled_step WHERE invoice_id = ANY($1::text[]) "
        "ORDER BY invoice_id, step_index",
        sample,
    )
    by_invoice: dict[str, list[asyncpg.Record]] = {}
    for s in steps:
        by_invoice.setdefault(s["invoice_id"], []).append(s)
    bad: list[str] = []
    for r in inv:
        facts = InvoiceFacts(
            invoice_id=r["id"], customer_id=r["customer_id"], number=r["number"],
            issue_date=r["issue_date"], due_date=r["due_date"], total=r["total"],
            balance=r["balance"], currency=r["currency"], timezone=r["timezone"],
            country=r["country"],
        )  # fmt: skip
        want = [
            (p.key, p.index, p.send_at, p.send_date, p.step.channel, p.fee_amount,
             p.interest_amount, p.reason + POLICY_SUFFIX, BUILTIN_POLICY_ID, 0)
            for p in plan(facts, DEFAULT_POLICY)
        ]  # fmt: skip
        got = [
            (s["step_key"], s["step_index"], s["send_at"], s["local_date"], s["channel"],
             s["fee_amount"], s["interest_amount"], s["reason"], s["policy_id"],
             s["policy_version"])
            for s in by_invoice.get(r["id"], [])
        ]  # fmt: skip
        if want != got:
            bad.append(r["id"])
    if len(inv) != len(sample):
        bad.append(f"{len(sample) - len(inv)} sampled invoices missing")
    return len(inv), bad
