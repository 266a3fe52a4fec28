"""What a consumer transaction reads once instead of once per event.

The consumer applies up to 50 events of one partition in one transaction (libs/events
consumer.py), and the events of a partition are mostly about the same few customers. Only the
consumer's `handle()` puts a `TransactionCache` in its session's `info`; the API's and the
scheduler's sessions have none, and every function here then reads as before.

What may be kept for the whole transaction:
- policies and policy assignments: no handler changes one (the API does, and recomputes
  the affected invoices in its own transaction, as with the policy list cached since 0eba2d2);
- customers: only the consumer writes the projection, and a customer's events all arrive on
  one partition, in order, so the row read earlier in the transaction is still current; the
  cache only keeps the objects referenced (the session's identity map holds them weakly and
  would read them again);
- which invoices held events wait for: an event is held for an invoice only by a handler of
  this consumer, for an event of that invoice's customer, so of the same partition: what is
  held when the transaction reads the keys, plus what it holds itself, is all there is.
  (Not so for customers: risk.events, another topic, holds events for them concurrently.)
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import distinct, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from dunning.domain.policy import PolicySpec
from dunning.models import CustomerProjection, HeldEvent, Policy

#: The `session.info` key of a consumer transaction's cache.
CONSUMER_CACHE = "dunning.consumer_cache"


@dataclass
class TransactionCache:
    policies: list[Policy] | None = None
    #: validated specs by (policy id, version)
    specs: dict[tuple[str, int], PolicySpec] = field(default_factory=dict)
    #: customer id -> the policy id assigned to it, or None for no override
    assignments: dict[str, str | None] = field(default_factory=dict)
    customers: dict[str, CustomerProjection] = field(default_factory=dict)
    #: `waiting_for` keys of the held events, once read
    held: set[str] | None = None


def cache_of(session: AsyncSession) -> TransactionCache | None:
    cache: TransactionCache | None = session.info.get(CONSUMER_CACHE)
    return cache


async def customer_of(session: AsyncSession, customer_id: str) -> CustomerProjection | None:
    """The projected customer (no lock), read once per consumer transaction."""
    cache = cache_of(session)
    if cache is not None and (known := cache.customers.get(customer_id)) is not None:
        return known
    customer = await session.get(CustomerProjection, customer_id)
    if cache is not None and customer is not None:
        cache.customers[customer_id] = customer
    return customer


def keep_customer(session: AsyncSession, customer: CustomerProjection) -> None:
    """Keep a customer the caller read (locked) or created for the rest of the transaction."""
    if (cache := cache_of(session)) is not None:
        cache.customers[customer.id] = customer


async def may_be_held(session: AsyncSession, waiting_for: str) -> bool:
    """False when certainly no held event waits for `waiting_for` (a DELETE spared)."""
    cache = cache_of(session)
    if cache is None or not waiting_for.startswith("invoice:"):
        return True
    if cache.held is None:
        waiting = col(HeldEvent.waiting_for)
        keys = await session.scalars(select(distinct(waiting)).where(waiting.like("invoice:%")))
        cache.held = set(keys.all())
    return waiting_for in cache.held


def note_held(session: AsyncSession, waiting_for: str) -> None:
    if (cache := cache_of(session)) is not None and cache.held is not None:
        cache.held.add(waiting_for)


def note_released(session: AsyncSession, waiting_for: str) -> None:
    if (cache := cache_of(session)) is not None and cache.held is not None:
        cache.held.discard(waiting_for)
