"""API tokens and idempotency records: the service's own bookkeeping tables (their columns
come from duewise_service, on this service's metadata) and the token schemas."""

from __future__ import annotations

import datetime as dt
from typing import Literal

from duewise_service.auth import api_token_table
from duewise_service.idempotency import idempotency_table
from pydantic import ConfigDict
from sqlmodel import Field, SQLModel

import invoice.models.common  # noqa: F401  (the naming convention, before any table)

Role = Literal["admin", "collector", "service"]

#: Bearer tokens, stored only as the SHA-256 hex digest of their plaintext.
API_TOKEN_TABLE = api_token_table(SQLModel.metadata)
#: The first response to a write made with an `Idempotency-Key`, per principal.
IDEMPOTENCY_TABLE = idempotency_table(SQLModel.metadata)


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
