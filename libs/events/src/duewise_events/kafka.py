"""The few Kafka settings every service shares, in one place."""

from __future__ import annotations

import asyncio
import contextlib

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient


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
