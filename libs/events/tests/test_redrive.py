"""Re-driving a dead-letter topic against the real broker and database: a record that failed
for a fixable reason is republished after the fix and takes effect exactly once; a second run
sends nothing; a dry run commits nothing; an unknown event type is parked, not dropped."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections import Counter
from collections.abc import Awaitable, Callable

from duewise_events import topic_reader
from duewise_events.catalogue import Event
from duewise_events.consumer import Outcome
from duewise_events.envelope import Envelope
from duewise_events.redrive import REDRIVE_COUNT, redrive, redriven_headers, source_topic
from events_support import make_consumer, record_effect
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from test_consumer import effect_counts, envelope, produce, wire


class Toggle:
    """A handler that fails (not a transient error: a bug, a bad row) until it is fixed."""

    def __init__(self) -> None:
        self.broken = True

    async def __call__(self, session: AsyncSession, event: Event, env: Envelope) -> None:
        if self.broken:
            raise RuntimeError("handler bug: cannot apply this invoice yet")
        await record_effect(session, event, env)


async def _consume(
    sessions: async_sessionmaker[AsyncSession],
    bootstrap: str,
    topic: str,
    name: str,
    handler: Callable[[AsyncSession, Event, Envelope], Awaitable[None]],
    until: Callable[[list[Outcome]], bool],
    timeout: float = 20.0,
) -> list[Outcome]:
    outcomes: list[Outcome] = []
    stop = asyncio.Event()
    consumer = make_consumer(
        sessions, bootstrap, topic, name=name, handler=handler, outcomes=outcomes
    )
    task = asyncio.create_task(consumer.run(stop))
    try:
        async with asyncio.timeout(timeout):
            while not until(outcomes):
                assert not task.done(), task.exception()
                await asyncio.sleep(0.05)
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)
    return outcomes


def _statuses(outcomes: list[Outcome], event_id: str) -> list[str]:
    return [o.status for o in outcomes if o.event_id == event_id]


def test_headers_drop_the_dlt_ones_and_count_redrives() -> None:
    headers = [("ce_id", b"e1"), ("dlt_error", b"boom"), (REDRIVE_COUNT, b"1"), ("x", b"y")]
    assert redriven_headers(headers, 1) == [("ce_id", b"e1"), ("x", b"y"), (REDRIVE_COUNT, b"2")]
    assert source_topic("invoice.events.dlt") == "invoice.events"


async def test_a_fixed_failure_is_redriven_once_and_applied_once(
    sessions: async_sessionmaker[AsyncSession], kafka_bootstrap: str, fresh_topic: str
) -> None:
    dlt = f"{fresh_topic}.dlt"
    bad, good = envelope("cus_rd", 700), envelope("cus_rd", 1)
    await produce(kafka_bootstrap, fresh_topic, [wire(bad)])
    handler, name = Toggle(), "redrive-test"
    first = await _consume(
        sessions, kafka_bootstrap, fresh_topic, name, handler, lambda o: len(o) >= 1
    )
    assert _statuses(first, bad.id) == ["dead_lettered"]
    assert await effect_counts(sessions) == Counter()

    dry = await redrive(kafka_bootstrap, dlt, group="rd", dry_run=True)
    assert [(p.event_id, p.target, p.consumer) for p in dry.records] == [
        (bad.id, fresh_topic, name)
    ]
    assert "handler bug" in dry.records[0].error
    assert dry.sent == 0

    handler.broken = False  # the fix
    sent = await redrive(kafka_bootstrap, dlt, group="rd")  # the dry run committed nothing
    assert (sent.read, sent.sent) == (1, 1)
    assert (await redrive(kafka_bootstrap, dlt, group="rd")).sent == 0  # remembered

    await produce(kafka_bootstrap, fresh_topic, [wire(good)])
    again = await _consume(
        sessions,
        kafka_bootstrap,
        fresh_topic,
        name,
        handler,
        lambda o: any(x.event_id == good.id for x in o),
    )
    assert _statuses(again, bad.id) == ["applied"]
    assert await effect_counts(sessions) == Counter({bad.id: 1, good.id: 1})
    (back,) = [
        r
        for r in await topic_reader.read(kafka_bootstrap, fresh_topic, idle_s=0.3, timeout_s=5)
        if dict(r.headers).get("ce_id") == bad.id.encode() and REDRIVE_COUNT in dict(r.headers)
    ]
    hs = dict(back.headers)
    assert hs[REDRIVE_COUNT] == b"1"
    assert not any(k.startswith("dlt_") and k != REDRIVE_COUNT for k in hs)
    assert back.key == bad.key.encode()
    assert back.value == bad.body()


async def test_an_unknown_type_is_parked_and_the_cli_redrives_it(
    sessions: async_sessionmaker[AsyncSession], kafka_bootstrap: str, fresh_topic: str
) -> None:
    dlt = f"{fresh_topic}.dlt"
    known = envelope("cus_new", 5)
    newer = Envelope(**{**known.__dict__, "id": "evt-from-the-future", "type": "invoice.x.v9"})
    await produce(kafka_bootstrap, fresh_topic, [wire(newer), wire(known)])
    outcomes = await _consume(
        sessions,
        kafka_bootstrap,
        fresh_topic,
        "redrive-unknown",
        record_effect,
        lambda o: any(x.event_id == known.id for x in o),
    )
    assert _statuses(outcomes, newer.id) == ["dead_lettered"]
    assert _statuses(outcomes, known.id) == ["applied"]  # the partition kept moving

    def cli(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "duewise_events.redrive", "--topic", dlt, *args],
            env={**os.environ, "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap},
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        return done.stdout

    listed = await asyncio.to_thread(cli, "--dry-run", "--consumer", "redrive-unknown")
    assert "unknown event type 'invoice.x.v9'" in listed
    assert "would re-drive 1 of 1" in listed
    assert "re-drove 1 of 1" in await asyncio.to_thread(cli, "--consumer", "redrive-unknown")
    assert "re-drove 0 of 0" in await asyncio.to_thread(cli, "--consumer", "redrive-unknown")
    other = await asyncio.to_thread(cli, "--consumer", "someone-else")
    assert "re-drove 0 of 1" in other
    assert "1 of other consumers passed over" in other
