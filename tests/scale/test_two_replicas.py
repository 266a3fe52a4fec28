"""Scale out: two replicas of every relay, consumer and the dunning scheduler, one broker and
one database per service, a bounded load, and the proof that the work was split and nothing
took effect twice.

- consumers: both members of each group hold partitions (disjoint, together all of them) and
  both members' partitions carried events; each invoice has one schedule in dunning, one
  "issued" movement in risk and one invoice mail in notify;
- schedulers: both emitted reminders, and every (invoice, step) went out in one event;
- relays: one per database publishes (an advisory lock), the other waits; killed, the active
  one's standby takes over and every outbox row is published.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
from collections import Counter, defaultdict
from typing import Any

import asyncpg
import httpx
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from duewise_events import topic_reader
from scale_stack import REPLICATED, TOKEN, Stack, scale_stack, wait, wait_until_ready

__all__ = ["scale_stack"]  # the fixture, used by name

CUSTOMERS = 40
INVOICES_PER_CUSTOMER = 5
DUE = "2027-03-10"  # a Wednesday; 12:00 in New York is inside the send window
DUE_NOON_NEW_YORK = "2027-03-10T17:00:00+00:00"
HEADERS = {"Authorization": f"Bearer {TOKEN}"}

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


async def rows(url: str, sql: str, *args: Any) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(url)
    try:
        return list(await conn.fetch(sql, *args))
    finally:
        await conn.close()


async def count(url: str, sql: str, *args: Any) -> int:
    (row,) = await rows(url, sql, *args)
    return int(row[0])


async def post(http: httpx.AsyncClient, path: str, body: dict[str, Any]) -> dict[str, Any]:
    r = await http.post(path, json=body)
    assert r.status_code == 201, r.text
    result: dict[str, Any] = r.json()
    return result


async def issue_customer(http: httpx.AsyncClient, n: int) -> tuple[str, list[str]]:
    customer = await post(
        http,
        "/v1/customers",
        {
            "name": f"Scale {n}",
            "external_id": f"SCALE-{n}",
            "currency": "USD",
            "timezone": "America/New_York",
            "country": "US",
            "locale": "en-US",
            "payment_terms_days": 30,
            "contacts": [{"name": "AP", "email": f"ap{n}@scale.example", "role": "billing"}],
        },
    )
    invoices = [
        (
            await post(
                http,
                "/v1/invoices",
                {
                    "customer_id": customer["id"],
                    "number": f"S-{n}-{i}",
                    "issue_date": "2027-02-01",
                    "due_date": DUE,
                    "currency": "USD",
                    "total": 10_000 + i,
                },
            )
        )["id"]
        for i in range(INVOICES_PER_CUSTOMER)
    ]
    return customer["id"], invoices


async def committed(bootstrap: str, group: str, topics: set[str]) -> dict[tuple[str, int], int]:
    """The consumer group's committed offset per (topic, partition) (0 when none).

    Read with a consumer of the group that subscribes to nothing, so it joins no rebalance
    (the broker here does not answer the admin client's OffsetFetch version).
    """
    reader = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await reader.start()
    try:
        return {
            (topic, p): (await reader.committed(TopicPartition(topic, p))) or 0
            for topic in topics
            for p in range(6)
        }
    finally:
        await reader.stop()


def active_relay(stack: Stack, service: str) -> list[str]:
    return [p.name for p in stack.replicas(service, "relay") if "relay.started" in p.output()]


async def test_two_replicas_split_the_work_and_nothing_happens_twice(scale_stack: Stack) -> None:
    stack = scale_stack
    db = stack.databases
    await wait_until_ready(stack)

    # One relay per service database holds the lock; its twin waits as a hot standby.
    for service in REPLICATED:
        assert len(active_relay(stack, service)) == 1, (service, active_relay(stack, service))

    async with httpx.AsyncClient(base_url=stack.invoice_url, headers=HEADERS, timeout=30) as http:
        sem = asyncio.Semaphore(6)

        async def one(n: int) -> tuple[str, list[str]]:
            async with sem:
                return await issue_customer(http, n)

        first = await asyncio.gather(*(one(n) for n in range(CUSTOMERS // 2)))
        # Mid-load, the active invoice relay dies without a goodbye; the standby takes over.
        (killed,) = active_relay(stack, "invoice")
        (standby,) = [p for p in stack.replicas("invoice", "relay") if p.name != killed]
        os.kill(stack.procs[killed].popen.pid, signal.SIGKILL)
        stack.expected_dead.add(killed)  # its exit is the test's doing
        second = await asyncio.gather(*(one(n) for n in range(CUSTOMERS // 2, CUSTOMERS)))
        book = dict(first + second)
        # The first invoice of every customer is paid in full before its due date.
        paid = {invoices[0] for invoices in book.values()}
        for customer, invoices in book.items():
            await post(
                http,
                "/v1/payments",
                {
                    "customer_id": customer,
                    "amount": 10_000,
                    "currency": "USD",
                    "method": "ach",
                    "received_at": "2027-02-15",
                    "allocations": [{"invoice_id": invoices[0], "amount": 10_000}],
                },
            )
    all_invoices = {i for invoices in book.values() for i in invoices}
    n_invoices = len(all_invoices)

    # Every service took in the whole book.
    async def taken_in() -> bool:
        return (
            await count(db["dunning"], "SELECT count(*) FROM invoice WHERE balance = 0")
            == len(paid)
            and await count(db["dunning"], "SELECT count(DISTINCT invoice_id) FROM scheduled_step")
            == n_invoices
            and await count(db["risk"], "SELECT count(*) FROM ar_movement")
            >= n_invoices + len(paid)
            and await count(db["notify"], "SELECT count(*) FROM message WHERE kind = 'invoice'")
            == n_invoices
        )

    await wait("the book reached every service", stack, taken_in, 90)
    assert "relay.started" in standby.output(), "the standby relay never took over"

    # Due day, noon in New York: both schedulers race for the due customers.
    since = await topic_reader.end_offsets(stack.bootstrap, "dunning.events")
    async with httpx.AsyncClient(base_url=stack.dunning_url, headers=HEADERS) as http:
        r = await http.post("/v1/admin/clock", json={"now": DUE_NOON_NEW_YORK})
        assert r.status_code == 200, r.text

    unpaid = n_invoices - len(paid)

    async def reminded() -> bool:
        emitted = await count(
            db["dunning"],
            "SELECT count(*) FROM scheduled_step WHERE status = 'emitted' AND step_key = 'due_today'",
        )
        reminders = await count(
            db["notify"], "SELECT count(*) FROM message WHERE kind = 'reminder'"
        )
        return emitted == unpaid and reminders == CUSTOMERS

    await wait("every due reminder went out", stack, reminded, 90)

    # --- the schedulers: split, and each (invoice, step) emitted once ---------------------------
    emitted = await rows(
        db["dunning"],
        "SELECT invoice_id, step_key, claimed_by FROM scheduled_step WHERE status = 'emitted'",
    )
    assert {(r["invoice_id"], r["step_key"]) for r in emitted} == {
        (i, "due_today") for i in all_invoices - paid
    }
    by_scheduler = Counter(r["claimed_by"].rsplit(":", 1)[0] for r in emitted)
    assert len(by_scheduler) == 2, f"one scheduler did all the work: {by_scheduler}"
    print(f"scale: due_today steps emitted per scheduler: {sorted(by_scheduler.values())}")
    records = await topic_reader.read(
        stack.bootstrap, "dunning.events", since=since, timeout_s=20, idle_s=2.0
    )
    reminder_events: dict[str, dict[str, Any]] = {}
    for record in records:
        headers = dict(record.headers)
        if headers.get("ce_type") == b"reminder.due.v1":
            reminder_events[headers["ce_id"].decode()] = json.loads(record.value or b"{}")
    sent = Counter(
        (line["invoice_id"], event["step_key"])
        for event in reminder_events.values()
        for line in event["invoices"]
    )
    assert set(sent) == {(i, "due_today") for i in all_invoices - paid}
    assert max(sent.values()) == 1, [k for k, v in sent.items() if v > 1]
    assert len(reminder_events) == CUSTOMERS  # one notice per customer and day
    assert await count(db["dunning"], "SELECT count(*) FROM notice") == CUSTOMERS

    # --- the relays: every outbox row published --------------------------------------------------
    for service in REPLICATED:
        assert (
            await count(db[service], "SELECT count(*) FROM outbox WHERE published_at IS NULL") == 0
        )

    # --- the consumers: partitions split, both members worked, effects exactly once ------------
    for service in REPLICATED:
        one, two = (p.assignment() for p in stack.replicas(service, "consumer"))
        assert one, f"{service}-consumer-1 holds no partition"
        assert two, f"{service}-consumer-2 holds no partition"
        assert not one & two
        for topic in {t for t, _ in one | two}:
            assert {p for t, p in one | two if t == topic} == set(range(6)), (service, topic)
        # Committed offsets advance for every record a member finished (handled or ignored).
        worked = {
            tp
            for tp, offset in (
                await committed(stack.bootstrap, service, {t for t, _ in one | two})
            ).items()
            if offset > 0
        }
        offsets = await committed(stack.bootstrap, service, {t for t, _ in one | two})
        print(
            f"scale: {service} consumers finished "
            f"{sum(offsets[tp] for tp in one)} / {sum(offsets[tp] for tp in two)} records"
        )
        assert one & worked, f"{service}-consumer-1's partitions carried no event"
        assert two & worked, f"{service}-consumer-2's partitions carried no event"

    schedules = await rows(
        db["dunning"], "SELECT invoice_id, count(*) AS n FROM scheduled_step GROUP BY invoice_id"
    )
    assert {r["invoice_id"] for r in schedules} == all_invoices
    assert {r["n"] for r in schedules} == {7}  # the default policy's seven steps, once
    issued = Counter(
        r["invoice_id"]
        for r in await rows(db["risk"], "SELECT invoice_id FROM ar_movement WHERE kind = 'issued'")
    )
    assert set(issued) == all_invoices
    assert set(issued.values()) == {1}
    mails: defaultdict[str, int] = defaultdict(int)
    for r in await rows(db["notify"], "SELECT invoice_ids FROM message WHERE kind = 'invoice'"):
        for invoice in (
            json.loads(r["invoice_ids"]) if isinstance(r["invoice_ids"], str) else r["invoice_ids"]
        ):
            mails[invoice] += 1
    assert set(mails) == all_invoices
    assert set(mails.values()) == {1}
