"""API tokens and idempotency records: the service's own bookkeeping tables."""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from pydantic import ConfigDict
from sqlalchemy import Column, DateTime, PrimaryKeyConstraint, Text, func
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel

from invoice.models.common import new_id, utcnow

Role = Literal["admin", "collector", "service"]


class ApiToken(SQLModel, table=True):
    """A bearer token, stored only as the SHA-256 hex digest of its plaintext.

    Tokens are 32 random bytes (256 bits of entropy), so a fast unsalted hash is the right
    tool: nobody can brute-force a 256-bit secret, and a slow KDF (bcrypt, argon2) would only
    add latency to every request. A salt is unnecessary for the same reason and would make
    the lookup by hash impossible.
    """

    __tablename__ = "api_token"

    id: str = Field(default_factory=lambda: new_id("tok"), primary_key=True)
    name: str
    role: str = Field(sa_type=Text)
    scopes: list[str] = Field(
        default_factory=list, sa_column=Column(JSONB, nullable=False, server_default="[]")
    )
    token_hash: str = Field(unique=True)
    created_at: dt.datetime = Field(
        default_factory=utcnow,
        sa_column=Column(DateTime(timezone=True), nullable=False, server_default=func.now()),
    )
    revoked_at: dt.datetime | None = Field(default=None, sa_type=DateTime(timezone=True))


class TokenCreate(SQLModel):
    model_config = ConfigDict(extra="forbid")  # type: ignore[assignment]

    name: str = Field(min_length=1, max_length=200)
    role: Role
    scopes: list[str] | None = None


class TokenPublic(SQLModel):
    id: str
    name: str
    role: Role
    scopes: list[str]
    created_at: dt.datetime


class TokenCreated(TokenPublic):
    token: str = Field(description="the plaintext token; shown once, stored only hashed")


class IdempotencyRecord(SQLModel, table=True):
    """The first response to a write made with an `Idempotency-Key`, per principal."""

    __tablename__ = "idempotency_record"
    __table_args__ = (PrimaryKeyConstraint("principal", "key"),)

    principal: str
    key: str = Field(max_length=255)
    method: str
    path: str
    request_hash: str
    status_code: int | None = None
    response_body: Any = Field(default=None, sa_column=Column(JSONB))
    created_at: dt.datetime = Field(
        default_factory=utcnow,
        sa_column=Column(
            DateTime(timezone=True), nullable=False, server_default=func.now(), index=True
        ),
    )
