"""Scenario 6: poison records on every topic, with the four real consumer processes running.

On each of invoice.events, dunning.events, risk.events and notify.events go, under one key:
undecodable bytes, a valid envelope whose body does not fit its type's schema, and a type no
catalogue knows; then a good record. Each poison lands on `<topic>.dlt` once per consumer
that had to give up on it, with the error in its headers; every consumer moves past it (its
committed offset passes the good record, and those that handle the good record applied it).

Then the re-drive: an invoice whose customer dunning holds with a time zone that does not
exist fails in dunning's handler (not a transient error, so it is retried and parked) while
notify and risk apply it. The fix is the customer's corrected time zone; then
`python -m duewise_events.redrive --topic invoice.events.dlt --consumer dunning` puts the
record back on invoice.events, dunning schedules the invoice, and notify and risk, which
had applied it, see their inbox row and do nothing: one effect in every consumer.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import subprocess
import sys
import uuid
from collections import Counter
from pathlib import Path

import ledger
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from consumer_kit import ROOT, Stack, own_broker, publish, stack, wait_for
from duewise_events import topic_reader
from duewise_events.catalogue import (
    ContactSnapshot,
    CustomerCreated,
    CustomerUpdated,
    Event,
    InvoiceIssued,
    MessageFailed,
    ReminderDue,
    ReminderInvoice,
    RiskScoreChanged,
    dead_letter_topic,
)
from duewise_events.envelope import Envelope
from dunning.domain.plan import InvoiceFacts, plan
from dunning.domain.policy import DEFAULT_POLICY
from dunning.handlers import HANDLERS as DUNNING_HANDLERS
from dunning.handlers import TOPICS as DUNNING_TOPICS
from invoice.handlers import HANDLERS as INVOICE_HANDLERS
from invoice.handlers import TOPICS as INVOICE_TOPICS
from notify.cli import CONSUMED_TOPICS as NOTIFY_TOPICS
from notify.handlers import HANDLERS as NOTIFY_HANDLERS
from risk.handlers import HANDLERS as RISK_HANDLERS

__all__ = ["own_broker"]

SERVICES = ("invoice", "dunning", "risk", "notify")
#: consumer group -> (topics it reads, event types it handles)
CONSUMERS: dict[str, tuple[set[str], set[str]]] = {
    "invoice": (set(INVOICE_TOPICS), {c.TYPE for c in INVOICE_HANDLERS}),
    "dunning": (set(DUNNING_TOPICS), {c.TYPE for c in DUNNING_HANDLERS}),
    "risk": (
        {"invoice.events", "dunning.events", "notify.events"},
        {c.TYPE for c in RISK_HANDLERS},
    ),
    "notify": (set(NOTIFY_TOPICS), {c.TYPE for c in NOTIFY_HANDLERS}),
}
NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)
TODAY = NOW.date()


def _good(topic: str, cid: str) -> Event:
    """A well-formed event of `topic` about customer `cid`."""
    if topic == "invoice.events":
        return _customer(cid, "Europe/Berlin")
    if topic == "dunning.events":
        return ReminderDue(
            customer_id=cid,
            notice_id=f"ntc_{cid}",
            step_key="due_today",
            step_index=1,
            channel="email",
            template="reminder_due_today",
            tone="friendly",
            local_date=TODAY,
            send_at=NOW,
            invoices=[
                ReminderInvoice(
                    invoice_id=f"inv_{cid}",
                    number="P6-1",
                    due_date=TODAY,
                    balance=100_00,
                    currency="EUR",
                    days_overdue=0,
                )
            ],
            currency="EUR",
            total_balance=100_00,
            policy_id="builtin-default",
            policy_version=0,
        )
    if topic == "risk.events":
        return RiskScoreChanged(
            customer_id=cid, score=40, band="medium", factors=[], changed_at=NOW
        )
    return MessageFailed(
        customer_id=cid,
        message_id=f"msg_{cid}",
        kind="invoice",
        channel="email",
        reason="550 mailbox unavailable",
        failed_at=NOW,
    )


def _customer(cid: str, tz: str) -> CustomerCreated:
    return CustomerCreated(
        customer_id=cid,
        name=f"Poison {cid}",
        currency="EUR",
        timezone=tz,
        country="DE",
        locale="de-DE",
        payment_terms_days=30,
        contacts=[
            ContactSnapshot(id=f"con_{cid}", name="AP", email="ap@p6.invalid", role="billing")
        ],
    )


def _wire(env: Envelope) -> tuple[bytes, bytes, list[tuple[str, bytes]]]:
    return env.key.encode(), env.body(), env.headers()


def _poisons(
    topic: str, cid: str
) -> list[tuple[str, str, tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]]]:
    """(kind, event id or '', record) of the three poisons for `topic`, keyed by `cid`."""
    good = Envelope.wrap(_good(topic, cid), source="duewise/faults")
    broken = Envelope(
        **{
            **good.__dict__,
            "id": f"evt_broken_{uuid.uuid4().hex[:8]}",
            "data": {"customer_id": cid, "unexpected": True},  # required fields missing
        }
    )
    alien = Envelope(
        **{**good.__dict__, "id": f"evt_alien_{uuid.uuid4().hex[:8]}", "type": "acme.unknown.v7"}
    )
    garbage: list[tuple[str, bytes]] = [("content-type", b"application/octet-stream")]
    return [
        ("undecodable", "", (cid.encode(), b"\xff\xfe\x00 not an event", garbage)),
        ("invalid body", broken.id, _wire(broken)),
        ("unknown type", alien.id, _wire(alien)),
    ]


def _expected_dlt(topic: str, kind: str, event_type: str) -> set[str]:
    """The consumer groups that must dead-letter a poison of `kind` on `topic`."""
    readers = {name for name, (topics, _) in CONSUMERS.items() if topic in topics}
    if kind == "invalid body":  # only those that handle the type try to read its body
        return {name for name in readers if event_type in CONSUMERS[name][1]}
    return readers


async def _committed(bootstrap: str, group: str, tp: TopicPartition) -> int:
    reader = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await reader.start()
    try:
        return (await reader.committed(tp)) or 0
    finally:
        await reader.stop()


async def _in_inbox(s: Stack, service: str, event_id: str) -> int:
    return int(
        await s.scalar(service, "SELECT count(*) FROM inbox WHERE event_id = $1", event_id) or 0  # type: ignore[call-overload]
    )


@pytest.mark.slow
@pytest.mark.timeout(420)
async def test_poison_on_every_topic_is_parked_and_a_fixed_record_is_redriven_once(
    own_broker: str, pg_server_url: str, tmp_path: Path
) -> None:
    tag = uuid.uuid4().hex[:6]
    cid, bad_cid = f"cus_p6_{tag}", f"cus_p6tz_{tag}"
    async with stack(pg_server_url, own_broker, tmp_path, SERVICES) as s:
        for name in SERVICES:
            s.spawn(name, "consumer")
        # The invoice that dunning cannot plan: its customer's time zone does not exist.
        customer_bad = _customer(bad_cid, "Mars/Olympus_Mons")
        stuck = InvoiceIssued(
            customer_id=bad_cid,
            invoice_id=f"inv_p6_{tag}",
            number="P6-9",
            issue_date=TODAY,
            due_date=TODAY + dt.timedelta(days=30),
            currency="EUR",
            total=250_00,
            balance=250_00,
        )
        _, stuck_env = await publish(own_broker, [customer_bad, stuck])

        producer = AIOKafkaProducer(bootstrap_servers=own_broker, acks="all")
        await producer.start()
        sent: list[tuple[str, str, str, str, int]] = []  # topic, kind, event id, type, partition
        goods: dict[str, tuple[Envelope, TopicPartition, int]] = {}
        try:
            for topic in ("invoice.events", "dunning.events", "risk.events", "notify.events"):
                for kind, event_id, (key, value, headers) in _poisons(topic, cid):
                    meta = await producer.send_and_wait(
                        topic, value=value, key=key, headers=headers
                    )
                    sent.append((topic, kind, event_id, _good(topic, cid).TYPE, meta.partition))
                good = Envelope.wrap(_good(topic, cid), source="duewise/faults")
                meta = await producer.send_and_wait(
                    topic, value=good.body(), key=good.key.encode(), headers=good.headers()
                )
                goods[topic] = (good, TopicPartition(topic, meta.partition), meta.offset)
        finally:
            await producer.stop()

        expected: Counter[tuple[str, str, str]] = Counter()  # (topic, consumer, kind)
        for topic, kind, _, event_type, _ in sent:
            for consumer in _expected_dlt(topic, kind, event_type):
                expected[(topic, consumer, kind)] += 1
        expected[("invoice.events", "dunning", "handler failure")] += 1  # the stuck invoice

        async def moved_on() -> bool:
            for topic, (good, tp, offset) in goods.items():
                for consumer, (topics, types) in CONSUMERS.items():
                    if topic not in topics:
                        continue
                    if await _committed(own_broker, consumer, tp) <= offset:
                        return False
                    if good.type in types and not await _in_inbox(s, consumer, good.id):
                        return False
            return True

        took = await wait_for(
            "every consumer past every poison", moved_on, timeout=300, stack_=s, every=1
        )

        parked: Counter[tuple[str, str, str]] = Counter()
        without_error: list[str] = []
        for topic in goods:
            records = await topic_reader.read(
                own_broker,
                dead_letter_topic(topic),
                timeout_s=5,
                idle_s=1,
                until=lambda rs: True,
            )
            for r in records:
                if r.key not in (cid.encode(), bad_cid.encode()):
                    continue
                hs = dict(r.headers)
                ce_id = hs.get("ce_id", b"").decode()
                kind = (
                    "handler failure"
                    if ce_id == stuck_env.id
                    else "undecodable"
                    if "ce_id" not in hs
                    else "unknown type"
                    if ce_id.startswith("evt_alien_")
                    else "invalid body"
                )
                parked[(topic, hs["dlt_consumer"].decode(), kind)] += 1
                if not hs.get("dlt_error") or hs.get("dlt_original_topic") != topic.encode():
                    without_error.append(f"{topic}/{kind}")
        print(f"scenario 6: consumers past every poison after {took:.0f}s; parked {dict(parked)}")

        # --- the fix, then the re-drive --------------------------------------------------
        assert (
            await s.scalar(
                "dunning",
                "SELECT count(*) FROM scheduled_step WHERE invoice_id = $1",
                stuck.invoice_id,
            )
            == 0
        )
        fixed = CustomerUpdated(
            **{**customer_bad.model_dump(), "timezone": "Europe/Berlin"}, changed=["timezone"]
        )
        (fixed_env,) = await publish(own_broker, [fixed])
        await wait_for(
            "dunning applied the corrected time zone",
            lambda: _has(s, "dunning", fixed_env.id),
            timeout=120,
            stack_=s,
        )
        redrive = await asyncio.to_thread(
            subprocess.run,
            [
                sys.executable, "-m", "duewise_events.redrive",
                "--topic", "invoice.events.dlt", "--consumer", "dunning",
            ],
            cwd=ROOT,
            env={**os.environ, "KAFKA_BOOTSTRAP_SERVERS": own_broker},
            capture_output=True,
            text=True,
            timeout=120,
        )  # fmt: skip
        assert redrive.returncode == 0, redrive.stderr
        assert stuck_env.id in redrive.stdout
        planned = plan(
            InvoiceFacts(
                invoice_id=stuck.invoice_id,
                customer_id=bad_cid,
                number=stuck.number,
                issue_date=stuck.issue_date,
                due_date=stuck.due_date,
                total=stuck.total,
                balance=stuck.balance,
                currency="EUR",
                timezone="Europe/Berlin",
                country="DE",
            ),
            DEFAULT_POLICY,
        )

        async def scheduled() -> bool:
            n = await s.scalar(
                "dunning",
                "SELECT count(*) FROM scheduled_step WHERE invoice_id = $1 AND status = 'pending'",
                stuck.invoice_id,
            )
            return n == len(planned)

        await wait_for("dunning scheduled the re-driven invoice", scheduled, timeout=120, stack_=s)
        # Every consumer has now seen the record twice (risk and notify) or failed then
        # applied it (dunning): give a second copy time to show, then count effects.
        await wait_for(
            "risk and notify saw the re-driven copy",
            lambda: _past(own_broker, ("risk", "notify"), "invoice.events"),
            timeout=60,
            stack_=s,
        )
        effects = {
            "dunning inbox": await _in_inbox(s, "dunning", stuck_env.id),
            "risk inbox": await _in_inbox(s, "risk", stuck_env.id),
            "notify inbox": await _in_inbox(s, "notify", stuck_env.id),
            "notify invoice mail": int(
                await s.scalar(  # type: ignore[call-overload]
                    "notify",
                    "SELECT count(*) FROM message WHERE idempotency_key = $1",
                    f"invoice:{stuck.invoice_id}",
                )
                or 0
            ),
            "dunning steps": int(
                await s.scalar(  # type: ignore[call-overload]
                    "dunning",
                    "SELECT count(*) FROM scheduled_step WHERE invoice_id = $1",
                    stuck.invoice_id,
                )
                or 0
            ),
        }

    wanted_effects = {k: 1 for k in effects} | {"dunning steps": len(planned)}
    row = ledger.record(
        ledger.Row(
            "6 poison on every topic + re-drive",
            events_in=len(sent) + len(goods) + 1,
            effects_out=sum(parked.values()) + len(goods) + 1,
        )
    )
    row.lost = sum((expected - parked).values()) + sum(
        max(0, wanted_effects[k] - v) for k, v in effects.items()
    )
    row.duplicated = sum((parked - expected).values()) + sum(
        max(0, v - wanted_effects[k]) for k, v in effects.items()
    )
    if expected != parked:
        row.notes.append(f"DLT: missing {dict(expected - parked)}, extra {dict(parked - expected)}")
    if effects != wanted_effects:
        row.notes.append(f"re-driven effects {effects} != {wanted_effects}")
    assert not without_error, f"DLT records without their error headers: {without_error}"
    row.check()


async def _has(s: Stack, service: str, event_id: str) -> bool:
    return await _in_inbox(s, service, event_id) > 0


async def _past(bootstrap: str, groups: tuple[str, ...], topic: str) -> bool:
    """True when each group's committed offsets reached the topic's end."""
    ends = await topic_reader.end_offsets(bootstrap, topic)
    for group in groups:
        for partition, end in ends.items():
            if await _committed(bootstrap, group, TopicPartition(topic, partition)) < end:
                return False
    return True
