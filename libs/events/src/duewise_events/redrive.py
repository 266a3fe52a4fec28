"""Re-drive a dead-letter topic: put its records back on their source topic, after a fix.

    python -m duewise_events.redrive --topic invoice.events.dlt [--group duewise-redrive]
        [--consumer dunning] [--dry-run] [--bootstrap-servers HOST:PORT]

A consumer parks a record on `<topic>.dlt` when it keeps failing (consumer.py). Once the cause
is fixed (a bug deployed away, a bad configuration row corrected, a consumer upgraded to know a
new event type), this command republishes each parked record to the topic it came from:

- the key, the body and the CloudEvents headers (`ce_id` above all) are kept, so every
  consumer's inbox still recognises the event: a consumer that had applied it (the DLT holds
  one copy per consumer that failed) finds its inbox row and has no second effect;
- the `dlt_*` headers are dropped and `dlt_redrive_count` says how many times the record has
  been re-driven (a record that fails again comes back to the DLT carrying it);
- it reads the DLT with a consumer group of its own and commits that group's offsets after
  each republished batch, so a second run does not send the same records again; `--dry-run`
  lists what would be sent and commits nothing;
- it stops at the end the DLT had when it started, so records that fail again during the run
  wait for the next run instead of looping.

Killed between a send and its commit, a run re-sends that batch next time: harmless, as above.
Order: a re-driven record arrives after everything its customer saw since; the consumers
already hold events that arrive before what they refer to, and allocations carry absolute
balances, which is what makes late arrival safe.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.structs import ConsumerRecord

from duewise_events import topic_reader
from duewise_events.kafka import make_producer

DLT_SUFFIX = ".dlt"
REDRIVE_COUNT = "dlt_redrive_count"
DEFAULT_GROUP = "duewise-redrive"

Headers = list[tuple[str, bytes]]


@dataclass(frozen=True)
class Parked:
    """One DLT record, and where it would go."""

    partition: int
    offset: int
    target: str
    consumer: str
    error: str
    event_type: str
    event_id: str
    redrives: int


@dataclass
class RedriveResult:
    topic: str
    read: int = 0
    sent: int = 0
    skipped: int = 0  # dead-lettered by another consumer than the one asked for
    records: list[Parked] = field(default_factory=list)


def source_topic(dlt_topic: str) -> str:
    """`invoice.events.dlt` -> `invoice.events`."""
    if not dlt_topic.endswith(DLT_SUFFIX):
        raise ValueError(f"{dlt_topic!r} is not a dead-letter topic (no {DLT_SUFFIX} suffix)")
    return dlt_topic[: -len(DLT_SUFFIX)]


def _text(headers: dict[str, bytes], name: str, default: str = "") -> str:
    value = headers.get(name)
    return value.decode(errors="replace") if value is not None else default


def describe(record: ConsumerRecord[bytes, bytes], dlt_topic: str) -> Parked:
    """What a parked record is, from its headers."""
    hs = {k: v for k, v in record.headers}
    try:
        redrives = int(_text(hs, REDRIVE_COUNT, "0"))
    except ValueError:
        redrives = 0
    return Parked(
        partition=record.partition,
        offset=record.offset,
        target=_text(hs, "dlt_original_topic") or source_topic(dlt_topic),
        consumer=_text(hs, "dlt_consumer"),
        error=_text(hs, "dlt_error"),
        event_type=_text(hs, "ce_type", "?"),
        event_id=_text(hs, "ce_id", "?"),
        redrives=redrives,
    )


def redriven_headers(headers: Sequence[tuple[str, bytes]], redrives: int) -> Headers:
    """The record's own headers (ce_*, traceparent, ...) without the DLT's, plus the count."""
    kept = [(k, v) for k, v in headers if not k.startswith("dlt_") and k != REDRIVE_COUNT]
    return [*kept, (REDRIVE_COUNT, str(redrives + 1).encode())]


async def redrive(
    bootstrap_servers: str,
    dlt_topic: str,
    *,
    group: str = DEFAULT_GROUP,
    consumer: str | None = None,
    dry_run: bool = False,
    idle_s: float = 10.0,
) -> RedriveResult:
    """Republish the DLT's records from the group's committed offsets up to today's end.

    `consumer` limits the run to records that consumer group dead-lettered; the others are
    passed over *for this group* (pick a group per filter: main() does). `idle_s` bounds a
    wait for records the broker said were there.
    """
    source_topic(dlt_topic)  # fail fast on a name that is not a DLT
    result = RedriveResult(topic=dlt_topic)
    ends = await topic_reader.end_offsets(bootstrap_servers, dlt_topic)
    reader = AIOKafkaConsumer(
        bootstrap_servers=bootstrap_servers,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    producer = make_producer(bootstrap_servers)
    await reader.start()
    await producer.start()
    try:
        tps = [TopicPartition(dlt_topic, p) for p, end in sorted(ends.items()) if end > 0]
        if not tps:
            return result
        # Assigned, not subscribed: no group membership to join or rebalance, only its offsets.
        reader.assign(tps)
        todo: dict[TopicPartition, int] = {}
        for tp in tps:
            committed = await reader.committed(tp)
            start = committed if committed is not None else 0
            if start < ends[tp.partition]:
                reader.seek(tp, start)
                todo[tp] = ends[tp.partition]
            else:
                reader.pause(tp)
        idle_deadline = time.monotonic() + idle_s
        while todo and time.monotonic() < idle_deadline:
            batch = await reader.getmany(*todo, timeout_ms=500, max_records=500)
            if not batch:
                continue
            idle_deadline = time.monotonic() + idle_s
            done: dict[TopicPartition, int] = {}
            sends: list[asyncio.Future[object]] = []
            for tp, records in batch.items():
                end = todo[tp]
                for record in records:
                    if record.offset >= end:
                        break
                    result.read += 1
                    done[tp] = record.offset + 1
                    parked = describe(record, dlt_topic)
                    if consumer is not None and parked.consumer != consumer:
                        result.skipped += 1
                        continue
                    result.records.append(parked)
                    if not dry_run:
                        sends.append(
                            await producer.send(
                                parked.target,
                                value=record.value,
                                key=record.key,
                                headers=redriven_headers(record.headers, parked.redrives),
                            )
                        )
                if records[-1].offset + 1 >= end:
                    del todo[tp]
                    reader.pause(tp)
            if not dry_run and done:
                # Every send of the batch acknowledged (or raising) before offsets are committed.
                await asyncio.gather(*sends)
                result.sent += len(sends)
                await reader.commit(done)
        return result
    finally:
        await producer.stop()
        await reader.stop()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m duewise_events.redrive",
        description="Republish a dead-letter topic's records to their source topic after a fix.",
    )
    parser.add_argument("--topic", required=True, help="the DLT, e.g. invoice.events.dlt")
    parser.add_argument(
        "--bootstrap-servers",
        default=os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092"),
        help="Kafka bootstrap servers (default: $KAFKA_BOOTSTRAP_SERVERS or 127.0.0.1:9092)",
    )
    parser.add_argument(
        "--group",
        default=None,
        help="consumer group whose offsets remember what was re-driven "
        f"(default {DEFAULT_GROUP}, or {DEFAULT_GROUP}-<consumer> with --consumer)",
    )
    parser.add_argument(
        "--consumer",
        default=None,
        help="only records dead-lettered by this consumer group (the others are passed over)",
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="list what would be re-driven; send nothing"
    )
    args = parser.parse_args(argv)
    try:
        result = asyncio.run(
            redrive(
                args.bootstrap_servers,
                args.topic,
                group=args.group
                or (f"{DEFAULT_GROUP}-{args.consumer}" if args.consumer else DEFAULT_GROUP),
                consumer=args.consumer,
                dry_run=args.dry_run,
            )
        )
    except ValueError as exc:
        print(f"redrive: {exc}", file=sys.stderr)
        return 2
    for p in result.records:
        print(
            f"{args.topic}[{p.partition}]@{p.offset} -> {p.target}: {p.event_type} {p.event_id} "
            f"(dead-lettered by {p.consumer or '?'}, re-driven {p.redrives}x before): {p.error}"
        )
    verb = "would re-drive" if args.dry_run else "re-drove"
    print(
        f"redrive: {verb} {len(result.records)} of {result.read} records read from "
        f"{args.topic}"
        + (f" ({result.skipped} of other consumers passed over)" if result.skipped else "")
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
