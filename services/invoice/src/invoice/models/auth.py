"""API tokens and idempotency records: the service's own bookkeeping tables, whose columns
come from duewise_service, on this service's metadata (created by migration 0001)."""

from __future__ import annotations

from duewise_service.auth import api_token_table
from duewise_service.idempotency import idempotency_table
from sqlmodel import SQLModel

import invoice.models.common  # noqa: F401  (the naming convention, before any table)

#: Bearer tokens, stored only as the SHA-256 hex digest of their plaintext.
API_TOKEN_TABLE = api_token_table(SQLModel.metadata)
#: The first response to a write made with an `Idempotency-Key`, per principal.
IDEMPOTENCY_TABLE = idempotency_table(SQLModel.metadata)
