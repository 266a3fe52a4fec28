"""The settable clock: every "now" of the API, the handlers and the scheduler comes from here.

In production it is the system clock. Elsewhere it can be moved (DUNNING_CLOCK, or
`POST /v1/admin/clock`), as an offset from the system clock, so time keeps flowing after it
is set. The offset is also kept in the database (`clock_setting`) so the API and the
scheduler processes agree on it.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession


class Clock:
    """`now()` is the system time plus an offset; `frozen` pins it (tests)."""

    def __init__(self) -> None:
        self.offset = dt.timedelta(0)
        self.frozen: dt.datetime | None = None

    def now(self) -> dt.datetime:
        if self.frozen is not None:
            return self.frozen
        return dt.datetime.now(dt.UTC) + self.offset

    def set(self, now: dt.datetime, *, freeze: bool = False) -> None:
        """Make `now()` answer `now` from this moment on (and keep still if `freeze`)."""
        if now.tzinfo is None:
            raise ValueError("the clock needs an aware instant (with a UTC offset)")
        if freeze:
            self.frozen = now.astimezone(dt.UTC)
        else:
            self.frozen = None
            self.offset = now - dt.datetime.now(dt.UTC)

    def reset(self) -> None:
        self.offset = dt.timedelta(0)
        self.frozen = None

    async def load(self, session: AsyncSession) -> None:
        """Adopt the offset another process stored (no-op while frozen or when none is)."""
        if self.frozen is not None:
            return
        value = await session.scalar(text("SELECT offset_s FROM clock_setting WHERE id = 1"))
        if value is not None:
            self.offset = dt.timedelta(seconds=float(value))

    async def store(self, session: AsyncSession) -> None:
        """Share the current offset with the other processes (in the caller's transaction)."""
        await session.execute(
            text(
                "INSERT INTO clock_setting (id, offset_s) VALUES (1, :s) "
                "ON CONFLICT (id) DO UPDATE SET offset_s = EXCLUDED.offset_s"
            ),
            {"s": self.offset.total_seconds()},
        )


#: The process's clock.
clock = Clock()
