"""PostgreSQL URLs in the two spellings the drivers want, from whatever the operator gave."""

from __future__ import annotations

SCHEMES = ("postgresql://", "postgres://", "postgresql+asyncpg://")


def check_postgres_url(url: str) -> str:
    """`url` unchanged if it is a PostgreSQL URL; ValueError naming the problem otherwise."""
    if not url.startswith(SCHEMES):
        raise ValueError("must be a postgresql:// URL")
    return url


def sqlalchemy_url(url: str) -> str:
    """postgresql+asyncpg://… for SQLAlchemy's asyncpg dialect."""
    _, rest = check_postgres_url(url).split("://", 1)
    return f"postgresql+asyncpg://{rest}"


def plain_url(url: str) -> str:
    """postgresql://… for asyncpg itself (the relay, LISTEN/NOTIFY)."""
    _, rest = check_postgres_url(url).split("://", 1)
    return f"postgresql://{rest}"
