"""Column helpers every service's SQLModel tables use: ids, instants, JSON and money.

class Thing(MyModel, table=True):
    id: str = Field(default_factory=lambda: new_id("thg"), primary_key=True)
    tags: list[str] = json_column(list)
    amount: int = money_column()
    created_at: dt.datetime = timestamp_column()
"""

from __future__ import annotations

import datetime as dt
import os
import time
from typing import Any

from sqlalchemy import BigInteger, Column, DateTime, func
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field

#: Constraint and index names that do not depend on SQLAlchemy's version or the model order.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def new_id(prefix: str) -> str:
    """A time-ordered id such as `msg_0192f3a4b5c6d7e8f9a0b1c2d3e4f5a6`."""
    return f"{prefix}_{time.time_ns() // 1_000_000:012x}{os.urandom(10).hex()}"


def timestamp_column(*, nullable: bool = False, index: bool = False) -> Any:
    """A `timestamptz` column; not null ones default to now (in Python and in the database)."""
    return Field(
        default_factory=utcnow if not nullable else None,
        sa_column=Column(
            DateTime(timezone=True),
            nullable=nullable,
            server_default=None if nullable else func.now(),
            index=index,
        ),
    )


def json_column(default: Any) -> Any:
    """A not null JSONB column defaulting to an empty list or object (`default` is list/dict)."""
    server = "[]" if isinstance(default(), list) else "{}"
    return Field(
        default_factory=default, sa_column=Column(JSONB, nullable=False, server_default=server)
    )


def money_column(default: int | None = 0) -> Any:
    """Minor units in a `bigint`; nullable when the default is None."""
    return Field(default=default, sa_type=BigInteger, nullable=default is None)
