"""Scenario 7, the race that matters most: payments posted in the very second their reminder
falls due, a thousand times, and not one reminder for a paid invoice leaves notify.

Real processes throughout: the invoice API and relay, dunning's API (for its clock), relay,
consumer and scheduler, notify's consumer and sender, and an SMTP server (aiosmtpd) that
records when each message's SMTP transaction began. 1,200 customers with one invoice each,
all due on the same day, imported over the invoice API's CSV import (imported invoices are
not mailed on issue, so every mail the catcher gets is a reminder or a thank-you). Dunning's
clock is set three seconds before the due-date step's send instant; 1,000 of the invoices
are then paid over `POST /v1/payments`, each at a random moment within a second either side
of that instant, or at once when the scheduler is seen holding its step (claimed or just
emitted), whichever comes first; the other 200 stay unpaid and must get exactly one reminder
each.

"Paid before the send", precisely: the payment's POST had returned 201 (so its transaction
had committed) before the sender opened the SMTP transaction of the reminder (MAIL FROM, at
the catcher) - the sender's last look at the invoice API comes right before that, so it must
have seen the payment. A reminder whose SMTP transaction began before the payment's 201 is a
payment that came after the send: counted in the notes, not an error.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import random
import time
import uuid
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import ledger
import pytest
from consumer_kit import TOKEN, Mail, Stack, own_broker, smtp_catcher, stack, wait_for
from dunning.domain.calendar import next_business_day
from dunning.domain.policy import DEFAULT_POLICY

__all__ = ["own_broker"]

RACED, UNPAID = 1_000, 200
TZ = "Europe/Berlin"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
LEAD_S = 3.0  # the clock is set this long before the send instant


def _due_day(today: dt.date) -> dt.date:
    """A business day within the week ahead, so the before-due step is already past its
    issue date (left out) and the due-date step is the only one that falls due."""
    window = DEFAULT_POLICY.send_window
    day = next_business_day(today + dt.timedelta(days=3), window=window, country="DE")
    assert day - today <= dt.timedelta(days=7), day
    return day


def _csv(header: str, rows: list[str]) -> bytes:
    return ("\n".join([header, *rows]) + "\n").encode()


async def _ready(client: httpx.AsyncClient, url: str) -> bool:
    try:
        return (await client.get(f"{url}/readyz", timeout=2)).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.mark.slow
@pytest.mark.timeout(600)
async def test_payments_in_the_second_their_reminder_falls_due_get_no_reminder(
    own_broker: str, pg_server_url: str, tmp_path: Path
) -> None:
    tag = uuid.uuid4().hex[:5]
    rng = random.Random(tag)
    today = dt.datetime.now(dt.UTC).date()
    due = _due_day(today)
    send_at = dt.datetime.combine(
        due, DEFAULT_POLICY.send_window.start, tzinfo=ZoneInfo(TZ)
    ).astimezone(dt.UTC)
    n_total = RACED + UNPAID
    numbers = [f"R7{tag}-{n:05d}" for n in range(n_total)]
    raced = set(rng.sample(range(n_total), RACED))

    with smtp_catcher() as (smtp_url, mails):
        async with (
            stack(pg_server_url, own_broker, tmp_path, ("invoice", "dunning", "notify")) as s,
            httpx.AsyncClient(headers=AUTH, timeout=60) as http,
        ):
            _start(s, smtp_url)
            for service in ("invoice", "dunning"):
                await wait_for(
                    f"{service} API ready", lambda u=s.url(service): _ready(http, u),
                    timeout=120, stack_=s,
                )  # fmt: skip
            invoice_ids = await _import(http, s, tag, numbers, today, due)
            id_of = dict(zip(numbers, invoice_ids, strict=True))

            async def all_planned() -> bool:
                planned = await s.scalar(
                    "dunning",
                    "SELECT count(*) FROM scheduled_step WHERE step_key = 'due_today' "
                    "AND status = 'pending'",
                )
                known = await s.scalar("notify", "SELECT count(*) FROM invoice")
                return planned == n_total and known == n_total

            await wait_for(
                "dunning planned and notify knows every invoice", all_planned,
                timeout=240, stack_=s, every=1,
            )  # fmt: skip
            # Three seconds before the due-date step's send instant, on dunning's clock.
            r = await http.post(
                f"{s.url('dunning')}/v1/admin/clock",
                json={"now": (send_at - dt.timedelta(seconds=LEAD_S)).isoformat()},
            )
            assert r.status_code == 200, r.text
            t_due = time.time() + LEAD_S  # the send instant, in real time

            paid_at = await _pay_around(
                http, s, [numbers[n] for n in sorted(raced)], id_of, t_due, rng
            )

            async def settled() -> bool:
                open_steps = await s.scalar(
                    "dunning",
                    "SELECT count(*) FROM scheduled_step WHERE step_key = 'due_today' "
                    "AND status IN ('pending', 'claimed')",
                )
                unsent = await s.scalar(
                    "notify",
                    "SELECT count(*) FROM message WHERE kind = 'reminder' "
                    "AND status IN ('pending', 'sending')",
                )
                reminders = await s.scalar(
                    "notify", "SELECT count(*) FROM message WHERE kind = 'reminder'"
                )
                return open_steps == 0 and unsent == 0 and (reminders or 0) >= UNPAID

            took = await wait_for(
                "every due step emitted or cancelled and every reminder sent or skipped",
                settled, timeout=300, stack_=s, every=1,
            )  # fmt: skip
            await asyncio.sleep(2)  # a mail still in flight at the catcher
            kinds = {
                r["id"]: (r["kind"], r["status"])
                for r in await s.query("notify", "SELECT id, kind, status FROM message")
            }
            emitted = {
                r["invoice_id"]: r["updated_at"].timestamp()
                for r in await s.query(
                    "dunning",
                    "SELECT invoice_id, updated_at FROM scheduled_step "
                    "WHERE step_key = 'due_today' AND status = 'emitted'",
                )
            }

    reminders = [m for m in mails if kinds.get(m.message_id.split("@")[0], ("?",))[0] == "reminder"]
    by_number: dict[str, list[Mail]] = {}
    for mail in reminders:
        (rcpt,) = mail.rcpt_tos
        by_number.setdefault(numbers[int(rcpt.split("@")[0].rsplit("-", 1)[1])], []).append(mail)
    wrong, after_send, lost, doubled = [], 0, [], []
    for n in range(n_total):
        number = numbers[n]
        got = by_number.get(number, [])
        if n in raced:
            for mail in got:
                if paid_at[number] < mail.started:
                    wrong.append(f"{number}: paid {mail.started - paid_at[number]:.3f}s before")
                else:
                    after_send += 1
        else:
            if not got:
                lost.append(number)
            doubled.extend([number] * (len(got) - 1))
    in_second = sum(1 for t in paid_at.values() if abs(t - t_due) <= 1.0)
    # The race proper: dunning emitted the reminder (its last look found the invoice open),
    # and the payment committed around then; only notify's last look stands in the way.
    raced_emitted = [
        paid_at[numbers[n]] - emitted[id_of[numbers[n]]]
        for n in raced
        if id_of[numbers[n]] in emitted
    ]
    same_second = sum(1 for d in raced_emitted if abs(d) <= 1.0)
    row = ledger.record(
        ledger.Row(
            "7 payment vs reminder race",
            events_in=n_total,
            effects_out=len(reminders),
            lost=len(lost),
            duplicated=len(doubled),
            wrong_reminders=len(wrong),
        )
    )
    row.notes += [
        f"{in_second} of {RACED} payments committed within 1 s of the send instant "
        f"(the rest queued behind the invoice API)",
        f"dunning emitted {len(raced_emitted)} reminders for invoices being paid "
        f"({same_second} paid within 1 s of the emission); notify's last look stopped all but "
        f"{after_send + len(wrong)}",
        f"{after_send} reminders went out before their payment's 201 (paid after the send)",
        f"settled {took:.0f}s after the payments",
        *wrong[:5],
        *[f"no reminder for unpaid {n}" for n in lost[:5]],
    ]
    print("scenario 7: " + "; ".join(row.notes))
    row.check()


def _start(s: Stack, smtp_url: str) -> None:
    """Every process of the three services, with the SMTP catcher behind notify."""
    for service in ("invoice", "dunning", "notify"):
        s.port(service)  # every API URL known before the first process reads its environment
    s.spawn("invoice", "api")
    s.spawn("invoice", "relay")
    s.spawn("dunning", "api")
    s.spawn("dunning", "relay")
    s.spawn("dunning", "consumer")
    s.spawn(
        "dunning", "scheduler", DUNNING_SCHEDULER_INTERVAL_S="0.5", DUNNING_SCHEDULER_LEASE_S="30"
    )
    s.spawn("notify", "consumer")
    s.spawn("notify", "sender", SMTP_URL=smtp_url, NOTIFY_SENDER_INTERVAL_S="0.5")


async def _import(
    http: httpx.AsyncClient,
    s: Stack,
    tag: str,
    numbers: list[str],
    today: dt.date,
    due: dt.date,
) -> list[str]:
    """Customers and their invoices over the CSV import; the invoice ids, in order."""
    base = f"{s.url('invoice')}/v1/imports"
    customers = _csv(
        "customer_no,company,currency,country,time_zone,language,terms_days,ap_contact,ap_email",
        [
            f"C{number},Race {number},EUR,DE,{TZ},de-DE,30,AP,ap-{tag}-{n}@race7.example"
            for n, number in enumerate(numbers)
        ],
    )
    invoices = _csv(
        "customer_no,document_no,doc_type,document_date,due_date,currency,amount,open_amount",
        [f"C{number},{number},INV,{today},{due},EUR,100.00,100.00" for number in numbers],
    )
    for kind, body in (("customers", customers), ("invoices", invoices)):
        r = await http.post(
            f"{base}/{kind}",
            params={"mapping": "generic-example"},
            content=body,
            headers={"Content-Type": "text/csv"},
            timeout=300,
        )
        assert r.status_code == 201, r.text
        report = r.json()
        assert report["created"] == len(numbers), report
    rows = await s.query(
        "invoice", "SELECT id, number FROM invoice WHERE number = ANY($1::text[])", numbers
    )
    ids = {r["number"]: r["id"] for r in rows}
    return [ids[n] for n in numbers]


async def _pay_around(
    http: httpx.AsyncClient,
    s: Stack,
    numbers: list[str],
    id_of: dict[str, str],
    t_due: float,
    rng: random.Random,
) -> dict[str, float]:
    """Pay each invoice in full at a random moment within a second of `t_due`, and at once
    when dunning's scheduler is seen holding its step (claimed, or just emitted): those jump
    the queue, so that the payment lands while the reminder is on its way. Returns when each
    payment's 201 came back (its transaction had committed by then)."""
    rows = await s.query(
        "invoice",
        "SELECT i.id, c.id AS customer_id FROM invoice i JOIN customer c ON c.id = i.customer_id "
        "WHERE i.id = ANY($1::text[])",
        [id_of[n] for n in numbers],
    )
    customer_of = {r["id"]: r["customer_id"] for r in rows}
    number_of = {id_of[n]: n for n in numbers}
    done: dict[str, float] = {}
    started: set[str] = set()
    queue: asyncio.PriorityQueue[tuple[int, float, str]] = asyncio.PriorityQueue()
    loop = asyncio.get_running_loop()
    for number in numbers:
        at = t_due + rng.uniform(-1.0, 1.0)
        loop.call_later(max(0.0, at - time.time()), queue.put_nowait, (1, at, number))

    async def watch() -> None:
        while len(started) < len(numbers):
            for r in await s.query(
                "dunning",
                "SELECT invoice_id FROM scheduled_step WHERE step_key = 'due_today' "
                "AND status IN ('claimed', 'emitted') AND invoice_id = ANY($1::text[])",
                list(number_of),
            ):
                number = number_of[r["invoice_id"]]
                if number not in started:
                    queue.put_nowait((0, time.time(), number))
            await asyncio.sleep(0.1)

    async def worker() -> None:
        while len(started) < len(numbers):
            try:
                _, _, number = await asyncio.wait_for(queue.get(), 0.5)
            except TimeoutError:
                continue
            if number in started:
                continue
            started.add(number)
            invoice_id = id_of[number]
            while True:
                r = await http.post(
                    f"{s.url('invoice')}/v1/payments",
                    headers={"Idempotency-Key": f"race-{number}"},
                    json={
                        "customer_id": customer_of[invoice_id],
                        "amount": 10000,
                        "currency": "EUR",
                        "method": "wire",
                        "received_at": dt.datetime.now(dt.UTC).date().isoformat(),
                        "allocations": [{"invoice_id": invoice_id, "amount": 10000}],
                    },
                )
                if r.status_code != 503:
                    break
                # 48 payments at once can find every pooled connection busy: the API answers
                # 503 `overloaded` with Retry-After, and a client tries again (same key).
                assert r.json()["type"].endswith("/overloaded"), r.text
                await asyncio.sleep(float(r.headers.get("Retry-After", "1")))
            assert r.status_code == 201, r.text
            done[number] = time.time()

    watcher = asyncio.create_task(watch())
    try:
        await asyncio.gather(*(worker() for _ in range(48)))
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
    return done
