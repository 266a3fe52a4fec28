"""Through the real broker and the real EventConsumer: an invoice and a reminder delivered
three times reach the SMTP server once each; a malformed record goes to the DLT."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections import Counter

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from duewise_dev.broker import ensure_topics
from duewise_dev.catcher import Catcher
from duewise_events import topic_reader
from duewise_events.catalogue import DUNNING_EVENTS, INVOICE_EVENTS, dead_letter_topic
from duewise_events.consumer import EventConsumer, Outcome
from duewise_events.envelope import Envelope
from notify.config import Settings
from notify.handlers import HANDLERS
from notify.lastlook import InvoiceState
from notify.models import INBOX_TABLE
from notify_kit import customer, drain, invoice, mails_to, make_sender, messages, reminder, wrap
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

TOPICS = (INVOICE_EVENTS, DUNNING_EVENTS)


class Owed:
    async def states(self, invoice_ids: list[str]) -> dict[str, InvoiceState]:
        return {i: InvoiceState(status="open", balance=1_234_56) for i in invoice_ids}


async def _start_at_end(bootstrap: str, group: str) -> None:
    """Commit the group at the topics' ends: it sees only what this test produces."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False
    )
    await consumer.start()
    try:
        offsets: dict[TopicPartition, int] = {}
        for topic in TOPICS:
            ends = await topic_reader.end_offsets(bootstrap, topic)
            offsets.update({TopicPartition(topic, p): off for p, off in ends.items()})
        consumer.assign(list(offsets))
        await consumer.commit(offsets)
    finally:
        await consumer.stop()


async def _send(bootstrap: str, records: list[tuple[str, Envelope | bytes]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for topic, item in records:
            if isinstance(item, Envelope):
                await producer.send_and_wait(
                    topic, value=item.body(), key=item.key.encode(), headers=item.headers()
                )
            else:
                await producer.send_and_wait(topic, value=item, key=b"cus_poison")
    finally:
        await producer.stop()


async def test_events_through_the_broker_give_one_email_each(
    maker: async_sessionmaker[AsyncSession],
    notify_settings: Settings,
    catcher: Catcher,
    kafka_bootstrap: str,
) -> None:
    await ensure_topics(
        kafka_bootstrap, {t: 6 for t in TOPICS} | {dead_letter_topic(t): 6 for t in TOPICS}
    )
    group = f"notify-test-{secrets.token_hex(4)}"
    await _start_at_end(kafka_bootstrap, group)
    c = customer(email_="broker@acme.example")
    inv = invoice(c.customer_id)
    due = wrap(reminder([inv]))
    envelopes = [wrap(c), wrap(inv)]
    await _send(
        kafka_bootstrap,
        [
            (INVOICE_EVENTS, envelopes[0]),
            (INVOICE_EVENTS, envelopes[1]),
            (INVOICE_EVENTS, b"{not a cloud event"),
            (DUNNING_EVENTS, due),
            (DUNNING_EVENTS, due),  # redelivered
            (DUNNING_EVENTS, due),  # and again
        ],
    )
    outcomes: list[Outcome] = []
    consumer = EventConsumer(
        name=group,
        topics=list(TOPICS),
        handlers=HANDLERS,
        session_factory=maker,
        inbox=INBOX_TABLE,
        bootstrap_servers=kafka_bootstrap,
        retry_backoff_s=0.01,
        session_timeout_ms=1500,
        heartbeat_interval_ms=300,
        on_outcome=outcomes.append,
    )
    stop = asyncio.Event()
    task = asyncio.create_task(consumer.run(stop))
    wanted = Counter({envelopes[0].id: 1, envelopes[1].id: 1, due.id: 3})
    deadline = time.monotonic() + 30
    try:
        while not (
            wanted <= Counter(o.event_id for o in outcomes)
            and any(o.status == "dead_lettered" for o in outcomes)
        ):
            assert not task.done(), task.exception()
            assert time.monotonic() < deadline, outcomes
            await asyncio.sleep(0.05)
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)
    assert [o.status for o in outcomes if o.event_id == due.id] == [
        "applied",
        "duplicate",
        "duplicate",
    ]
    await drain(make_sender(notify_settings, Owed(), maker))  # type: ignore[arg-type]
    mails = mails_to(catcher, "broker@acme.example")
    assert len(mails) == 2  # the invoice and one reminder
    assert sorted(m.kind for m in await messages(maker, status="sent")) == ["invoice", "reminder"]
