"""A per-token limit on writes: a token bucket per bearer token, in the process's memory.

A runaway integration (a retry loop without backoff, a leaked token) then costs one token's
budget, not the database. The default is generous: the load bench posts about 300 writes/s
with one token and must not be throttled. A refused write gets 429 problem+json with
Retry-After (whole seconds until one write's worth of budget is back).

Each process keeps its own buckets, so with N workers or pods a token may write up to N
times the rate; the limit is a guard rail, not a quota.
"""

from __future__ import annotations

import math
import time

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from duewise_service.problems import DomainError


class RateLimitSettings(BaseSettings):
    """The write limit, the same for every service (env DUEWISE_WRITE_RATE_PER_S, …)."""

    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

    write_rate_per_s: float = Field(
        default=1000.0,
        gt=0,
        validation_alias=AliasChoices("DUEWISE_WRITE_RATE_PER_S", "write_rate_per_s"),
        description="sustained writes per second one token may make (per process)",
    )
    write_burst: int = Field(
        default=2000,
        ge=1,
        validation_alias=AliasChoices("DUEWISE_WRITE_BURST", "write_burst"),
        description="writes one token may make at once before the rate applies",
    )


class WriteRateLimiter:
    """Token buckets keyed by token id: `check(key)` spends one write or raises a 429."""

    def __init__(self, rate_per_s: float, burst: int, max_keys: int = 100_000) -> None:
        self.rate_per_s = rate_per_s
        self.burst = burst
        self.max_keys = max_keys
        self._buckets: dict[str, tuple[float, float]] = {}  # key → (tokens, updated at)

    @classmethod
    def from_settings(cls, settings: RateLimitSettings | None = None) -> WriteRateLimiter:
        s = settings or RateLimitSettings()
        return cls(s.write_rate_per_s, s.write_burst)

    def check(self, key: str, *, now: float | None = None) -> None:
        """Spend one write of `key`'s budget; DomainError(429) with Retry-After when empty."""
        now = time.monotonic() if now is None else now
        tokens, updated = self._buckets.get(key, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - updated) * self.rate_per_s)
        if tokens < 1.0:
            self._buckets[key] = (tokens, now)
            retry_after = max(1, math.ceil((1.0 - tokens) / self.rate_per_s))
            raise DomainError(
                429,
                "Too many requests",
                f"this token may make {self.rate_per_s:g} writes per second; "
                f"retry in {retry_after} s",
                code="rate-limited",
                headers={"Retry-After": str(retry_after)},
            )
        if len(self._buckets) >= self.max_keys and key not in self._buckets:
            self._buckets.clear()  # bounded: a flood of keys resets budgets, never grows memory
        self._buckets[key] = (tokens - 1.0, now)
