"""The embedded Tansu broker: a produced record comes back; topic creation is idempotent."""

from __future__ import annotations

import asyncio
import uuid

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from duewise_dev.broker import ensure_topics


async def test_ensure_topics_is_idempotent(kafka_bootstrap: str) -> None:
    topic = f"devstack.{uuid.uuid4().hex[:8]}"
    wanted = {topic: 3, f"{topic}.dlt": 3}
    assert sorted(await ensure_topics(kafka_bootstrap, wanted)) == sorted(wanted)
    assert await ensure_topics(kafka_bootstrap, wanted) == []
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        assert set(wanted) <= set(await admin.list_topics())
    finally:
        await admin.close()


async def test_a_produced_record_is_consumed_back(kafka_bootstrap: str) -> None:
    topic = f"devstack.{uuid.uuid4().hex[:8]}"
    await ensure_topics(kafka_bootstrap, {topic: 1})
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(topic, b"hello", key=b"customer-1")
    finally:
        await producer.stop()
    # Assigned, not subscribed: a group join costs seconds and is not what this tests.
    consumer = AIOKafkaConsumer(bootstrap_servers=kafka_bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        partition = TopicPartition(topic, 0)
        consumer.assign([partition])
        await consumer.seek_to_beginning(partition)
        record = await asyncio.wait_for(consumer.getone(), 10)
    finally:
        await consumer.stop()
    assert (record.key, record.value) == (b"customer-1", b"hello")
