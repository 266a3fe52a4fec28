"""Scenario 3: each consumer (dunning, risk, notify) SIGKILLed at random points while it works
through invoices and payments, and restarted; afterwards

- dunning: every invoice has exactly the schedule `plan()` gives for its final facts (pending
  steps of an open invoice with their dates and fees; every step cancelled on a paid one);
- risk: every live profile equals a replay of the same topic through the pure fold;
- notify: every message the rules call for exists, once: `invoice:<id>` per invoice, a thank-
  you per on-time payment that settles an invoice, good standing at the sixth in a row.

The events go straight onto invoice.events with the library's envelope (the consumers are
what is under test). The kill times come from a seeded RNG; the seed is printed and can be
replayed with FAULTS_SEED.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import os
import random
import time
from collections import Counter
from pathlib import Path
from typing import Any

import ledger
import pytest
from consumer_kit import Proc, Stack, own_broker, publish, stack, wait_for
from duewise_events.catalogue import (
    AllocationSnapshot,
    ContactSnapshot,
    CustomerCreated,
    Event,
    InvoiceIssued,
    PaymentReceived,
)
from dunning.domain.plan import InvoiceFacts, plan
from dunning.domain.policy import DEFAULT_POLICY
from risk.config import Settings as RiskSettings
from risk.service.rebuild import fold_topics

__all__ = ["own_broker"]

# The issue's size: 10,000 invoices and 5,000 payments over 500 customers (FAULTS_SCALE=1, the
# default). Since the consumers' leaner write paths (2026-12-02) it takes ~115 s on the 2-core
# machine (530 s before); FAULTS_SCALE=0.1 gives a quick run while working on a consumer.
SCALE = float(os.environ.get("FAULTS_SCALE", "1"))
CUSTOMERS, INVOICES, PAYMENTS = int(500 * SCALE), int(10_000 * SCALE), int(5_000 * SCALE)
KILLS_PER_CONSUMER = 3
GOOD_STANDING = 6  # notify's default NOTIFY_GOOD_STANDING
TZ, COUNTRY = "Europe/Berlin", "DE"


class Book:
    """The input and what it must produce."""

    def __init__(self, rng: random.Random, today: dt.date) -> None:
        self.events: list[Event] = []
        self.invoices: dict[str, InvoiceIssued] = {}
        self.paid: dict[str, PaymentReceived] = {}  # invoice id -> its payment
        per_customer = INVOICES // CUSTOMERS
        paid_ids = set(rng.sample(range(INVOICES), PAYMENTS))
        for c in range(CUSTOMERS):
            cid = f"cus_f3_{c:04d}"
            self.events.append(
                CustomerCreated(
                    customer_id=cid,
                    name=f"Fault Three {c}",
                    currency="EUR",
                    timezone=TZ,
                    country=COUNTRY,
                    locale="de-DE",
                    payment_terms_days=30,
                    contacts=[
                        ContactSnapshot(
                            id=f"con_f3_{c}", name="AP", email=f"ap{c}@f3.invalid", role="billing"
                        )
                    ],
                )
            )
            pays: list[PaymentReceived] = []
            for k in range(per_customer):
                n = c * per_customer + k
                total = rng.randrange(50_00, 5_000_00)
                inv = InvoiceIssued(
                    customer_id=cid,
                    invoice_id=f"inv_f3_{n:05d}",
                    number=f"F3-{n:05d}",
                    issue_date=today,
                    due_date=today + dt.timedelta(days=rng.randrange(20, 40)),
                    currency="EUR",
                    total=total,
                    balance=total,
                )
                self.invoices[inv.invoice_id] = inv
                self.events.append(inv)
                if n in paid_ids:
                    amount = total if rng.random() < 0.75 else total // 2
                    left = total - amount
                    pay = PaymentReceived(
                        customer_id=cid,
                        payment_id=f"pay_f3_{n:05d}",
                        amount=amount,
                        currency="EUR",
                        method="wire",
                        received_at=today,
                        allocations=[
                            AllocationSnapshot(
                                invoice_id=inv.invoice_id,
                                amount=amount,
                                invoice_balance=left,
                                invoice_status="paid" if left == 0 else "partially_paid",
                                due_date=inv.due_date,
                            )
                        ],
                    )
                    self.paid[inv.invoice_id] = pay
                    pays.append(pay)
            # Payments after the customer's invoices, in a shuffled order of their own.
            rng.shuffle(pays)
            self.events.extend(pays)

    def balance(self, invoice_id: str) -> int:
        pay = self.paid.get(invoice_id)
        return pay.allocations[0].invoice_balance if pay else self.invoices[invoice_id].total

    def schedule(self, invoice_id: str) -> set[tuple[Any, ...]]:
        """(step, status, send_at, fee, interest) rows dunning must hold for the invoice."""
        inv, pay = self.invoices[invoice_id], self.paid.get(invoice_id)
        facts = InvoiceFacts(
            invoice_id=inv.invoice_id,
            customer_id=inv.customer_id,
            number=inv.number,
            issue_date=inv.issue_date,
            due_date=inv.due_date,
            total=inv.total,
            balance=self.balance(invoice_id),
            currency=inv.currency,
            timezone=TZ,
            country=COUNTRY,
            last_payment_date=pay.received_at if pay else None,
        )
        if facts.balance == 0:  # planned while open, every step cancelled by the payment
            opened = plan(InvoiceFacts(**{**facts.__dict__, "balance": inv.total}), DEFAULT_POLICY)
            return {(p.key, "cancelled", None, None, None) for p in opened}
        return {
            (p.key, "pending", p.send_at, p.fee_amount, p.interest_amount)
            for p in plan(facts, DEFAULT_POLICY)
        }

    def messages(self) -> set[str]:
        """The idempotency keys of the messages notify must record."""
        keys = {f"invoice:{i}" for i in self.invoices}
        streak: Counter[str] = Counter()
        for event in self.events:
            if not isinstance(event, PaymentReceived):
                continue
            (alloc,) = event.allocations
            if alloc.invoice_status != "paid":
                continue
            keys.add(f"thank_you:{event.payment_id}")  # all on time: due dates are ahead
            streak[event.customer_id] += 1
            if streak[event.customer_id] == GOOD_STANDING:
                keys.add(f"good_standing:{event.customer_id}:{event.payment_id}")
        return keys


async def _killer(
    s: Stack, proc: Proc, rng: random.Random, total: int, done: asyncio.Event, log: list[str]
) -> Proc:
    """SIGKILL `proc` when its inbox reaches random fractions of the run (so the kills are
    spread over it), each time only once the current process has applied something itself
    (mid-work, not during start-up); restart it at once."""
    t0 = time.monotonic()
    for fraction in sorted(rng.uniform(0.02, 0.9) for _ in range(KILLS_PER_CONSUMER)):
        before = n = await _inbox(s, proc.service)
        while not done.is_set() and (n < total * fraction or n <= before):
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(done.wait(), 0.2)
            n = await _inbox(s, proc.service)
        if done.is_set() or n >= total:
            break  # its run is over before this kill
        await asyncio.to_thread(proc.kill)
        log.append(f"{proc.name} SIGKILL at {time.monotonic() - t0:.1f}s ({n}/{total} applied)")
        proc = s.spawn(proc.service, proc.command)
    return proc


async def _inbox(s: Stack, service: str) -> int:
    return int(await s.scalar(service, "SELECT count(*) FROM inbox") or 0)  # type: ignore[call-overload]


async def _check_dunning(s: Stack, book: Book) -> ledger.Row:
    rows = await s.query(
        "dunning",
        "SELECT invoice_id, step_key, status, send_at, fee_amount, interest_amount "
        "FROM scheduled_step",
    )
    live: dict[str, list[tuple[Any, ...]]] = {}
    for r in rows:
        pending = r["status"] == "pending"
        live.setdefault(r["invoice_id"], []).append(
            (
                r["step_key"],
                r["status"],
                r["send_at"] if pending else None,
                r["fee_amount"] if pending else None,
                r["interest_amount"] if pending else None,
            )
        )
    row = ledger.record(ledger.Row("3 consumer kills: dunning schedules", len(book.events), 0))
    for invoice_id in book.invoices:
        want, got = book.schedule(invoice_id), live.get(invoice_id, [])
        if len(got) > len(set(got)) or len(got) > len(want):
            row.duplicated += 1
            row.notes.append(f"{invoice_id}: {sorted(got)} != {sorted(want)}")
        elif set(got) != want:
            row.lost += 1
            row.notes.append(f"{invoice_id}: {sorted(got)} != {sorted(want)}")
        else:
            row.effects_out += 1
    balances = dict(
        (r[0], r[1]) for r in await s.query("dunning", "SELECT id, balance FROM invoice")
    )
    wrong = [i for i in book.invoices if balances.get(i) != book.balance(i)]
    row.lost += len(wrong)
    if wrong:
        row.notes.append(f"projected balances wrong for {wrong[:5]}")
    row.notes = row.notes[:5]
    return row


async def _check_risk(s: Stack, book: Book) -> ledger.Row:
    builder, _ = await fold_topics(s.bootstrap, RiskSettings().thresholds)
    replay = {r[0]: (json.loads(r[3]), r[4], r[5]) for r in builder.profile_rows()}
    rows = await s.query("risk", "SELECT customer_id, state, score, band FROM customer_profile")
    live = {
        r["customer_id"]: (
            json.loads(r["state"]) if isinstance(r["state"], str) else r["state"],
            r["score"],
            r["band"],
        )
        for r in rows
    }
    customers = {e.customer_id for e in book.events}
    row = ledger.record(ledger.Row("3 consumer kills: risk profiles", len(book.events), 0))
    for cid in sorted(customers):
        want, got = replay.get(cid), live.get(cid)
        if want is None:
            row.lost += 1
            row.notes.append(f"{cid}: not in the replay")
        elif got == want:
            row.effects_out += 1
        elif got is not None and len(got[0].get("payments", [])) > len(want[0].get("payments", [])):
            row.duplicated += 1
            row.notes.append(f"{cid}: live has more payments than the replay")
        else:
            row.lost += 1
            row.notes.append(f"{cid}: live profile differs from the replay: {_diff(got, want)}")
    row.notes = row.notes[:5]
    return row


def _diff(got: Any, want: Any) -> str:
    if got is None:
        return "no live profile"
    keys = [k for k in set(got[0]) | set(want[0]) if got[0].get(k) != want[0].get(k)]
    return f"state keys {sorted(keys)[:6]}, score {got[1]} vs {want[1]}"


async def _check_notify(s: Stack, book: Book) -> ledger.Row:
    rows = await s.query("notify", "SELECT idempotency_key, kind, cause_id FROM message")
    want = book.messages()
    keys = Counter(r["idempotency_key"] for r in rows)
    causes = Counter((r["kind"], r["cause_id"]) for r in rows)
    row = ledger.record(
        ledger.Row("3 consumer kills: notify messages", len(book.events), sum(keys.values()))
    )
    missing = want - set(keys)
    extra = set(keys) - want
    doubled = [k for k, n in keys.items() if n > 1] + [c for c, n in causes.items() if n > 1]
    row.lost = len(missing)
    row.duplicated = len(extra) + len(doubled)
    if missing:
        row.notes.append(f"missing {sorted(missing)[:5]}")
    if extra or doubled:
        row.notes.append(f"unexpected {sorted(extra)[:5]} doubled {doubled[:5]}")
    return row


@pytest.mark.slow
@pytest.mark.timeout(int(300 + 600 * SCALE))
async def test_consumers_killed_at_random_points_lose_and_double_nothing(
    own_broker: str, pg_server_url: str, tmp_path: Path
) -> None:
    seed = int(os.environ.get("FAULTS_SEED", time.time_ns() % 1_000_000))
    print(f"scenario 3 seed: FAULTS_SEED={seed}")
    rng = random.Random(seed)
    today = dt.datetime.now(dt.UTC).date()
    book = Book(rng, today)
    services = ("dunning", "risk", "notify")
    async with stack(pg_server_url, own_broker, tmp_path, services) as s:
        procs = [s.spawn(name, "consumer") for name in services]
        t0 = time.monotonic()
        done, kills = asyncio.Event(), []
        total = len(book.events)
        killers = [
            asyncio.create_task(_killer(s, p, random.Random(rng.random()), total, done, kills))
            for p in procs
        ]
        # In ten slices two seconds apart (each customer's events stay in order): the run has
        # a course even for risk, which folds a whole backlog in a few batches.
        step = -(-total // 10)
        for i in range(0, total, step):
            await publish(own_broker, book.events[i : i + step])
            await asyncio.sleep(2)
        produced_s = time.monotonic() - t0

        progress = {"at": time.monotonic()}

        async def all_in() -> bool:
            counts = await asyncio.gather(*(_inbox(s, name) for name in services))
            if time.monotonic() - progress["at"] >= 10:
                progress["at"] = time.monotonic()
                print(f"scenario 3 at {progress['at'] - t0:.0f}s: inbox {counts} of {total}")
            return all(n >= total for n in counts)

        try:
            took = await wait_for(
                "every consumer's inbox holds every event",
                all_in,
                timeout=480 + 1800 * SCALE,
                stack_=s,
                every=1,
            )
        finally:
            done.set()
            await asyncio.gather(*killers)
        print(
            f"scenario 3: {total} events produced in {produced_s:.1f}s, all applied after "
            f"{took:.0f}s; kills: {'; '.join(kills)}"
        )
        for name in services:  # at least once each, mid-work
            assert any(k.startswith(f"{name}-") for k in kills), f"{name} never killed: {kills}"
        rows = [
            await _check_dunning(s, book),
            await _check_risk(s, book),
            await _check_notify(s, book),
        ]
    for row in rows:
        row.notes.append(f"seed {seed}; {len(kills)} kills")
    for row in rows:
        row.check()
