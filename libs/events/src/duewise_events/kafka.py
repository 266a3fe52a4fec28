"""The few Kafka settings every service shares, in one place."""

from __future__ import annotations

import asyncio
import contextlib

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError


def make_producer(bootstrap_servers: str, *, enable_idempotence: bool = False) -> AIOKafkaProducer:
    """A producer that waits for every in-sync replica (acks=all).

    Idempotence is a setting, off by default: the embedded Tansu broker's memory store does
    not support InitProducerId. Consumers are idempotent (inbox), so duplicates are harmless.
    """
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap_servers,
        acks="all",
        enable_idempotence=enable_idempotence,
        linger_ms=2,
        request_timeout_ms=10_000,
    )


async def broker_reachable(bootstrap_servers: str, timeout_s: float = 2.0) -> bool:
    """True when the broker answers a metadata request within `timeout_s`."""
    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap_servers, request_timeout_ms=int(timeout_s * 1000)
    )
    try:
        await asyncio.wait_for(admin.start(), timeout_s)
        await asyncio.wait_for(admin.list_topics(), timeout_s)
        return True
    except Exception:  # any failure means "not ready"; the caller reports which dependency
        return False
    finally:
        with contextlib.suppress(Exception):
            await admin.close()


async def ensure_topics(bootstrap_servers: str, topics: dict[str, int]) -> None:
    """Create each topic with its partition count unless it already exists."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [NewTopic(t, n, 1) for t, n in topics.items() if t not in existing]
        if missing:
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(missing)
    finally:
        await admin.close()
