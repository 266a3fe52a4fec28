"""Read a topic without joining a consumer group: for DLT inspection, re-drives and tests."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TypeAlias

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.structs import ConsumerRecord

Record: TypeAlias = ConsumerRecord  # [bytes, bytes]; aiokafka ships no type hints


async def end_offsets(bootstrap_servers: str, topic: str) -> dict[int, int]:
    """Partition → next offset, now: read from here to see only what comes after.

    The embedded Tansu broker's ListOffsets can answer one short of the true end, so the
    answer is checked by reading from it: anything found there moves the end past it.
    """
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap_servers, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = consumer.partitions_for_topic(topic)
        if partitions is None:
            await consumer._client.force_metadata_update()
            partitions = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        if not tps:
            return {}
        ends = {tp.partition: off for tp, off in (await consumer.end_offsets(tps)).items()}
        consumer.assign(tps)
        for tp in tps:
            consumer.seek(tp, ends[tp.partition])
        while batch := await consumer.getmany(timeout_ms=50):
            for tp, records in batch.items():
                ends[tp.partition] = max(ends[tp.partition], records[-1].offset + 1)
        return ends
    finally:
        await consumer.stop()


async def read(
    bootstrap_servers: str,
    topic: str,
    *,
    since: dict[int, int] | None = None,
    until: Callable[[list[Record]], bool] | None = None,
    timeout_s: float = 10.0,
    idle_s: float = 0.0,
) -> list[Record]:
    """Records of `topic` from `since` (default: the beginning).

    Stops as soon as `until(records)` is true, or after `timeout_s`. With `idle_s`, keeps
    reading until nothing new arrived for that long (to be sure nothing more comes).
    """
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap_servers,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    records: list[Record] = []
    try:
        partitions = consumer.partitions_for_topic(topic)
        if partitions is None:
            await consumer._client.force_metadata_update()
            partitions = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        for tp in tps:
            if since and tp.partition in since:
                consumer.seek(tp, since[tp.partition])
            else:
                await consumer.seek_to_beginning(tp)
        deadline = time.monotonic() + timeout_s
        last_new = time.monotonic()
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=100)
            for recs in batch.values():
                records.extend(recs)
            if batch:
                last_new = time.monotonic()
            if until is not None and until(records):
                if not idle_s:
                    break
                if time.monotonic() - last_new >= idle_s:
                    break
            await asyncio.sleep(0)
        return records
    finally:
        await consumer.stop()
