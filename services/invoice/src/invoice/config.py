"""The invoice service's settings: one object, read from the environment."""

from __future__ import annotations

from functools import lru_cache

from duewise_service import settings as shared
from duewise_service.secret_files import ServiceSettings
from pydantic import AliasChoices, Field


class Settings(ServiceSettings, shared.CommonSettings):
    """Everything the invoice service reads from its environment (Kafka and the admin token:
    `shared.CommonSettings`)."""

    database_url: str = shared.database_url_field(
        "invoice", description="PostgreSQL URL, postgresql:// or postgresql+asyncpg://"
    )
    host: str = shared.host_field("INVOICE")
    port: int = shared.port_field("INVOICE", 8001)
    relay_pause_before_mark_s: float = Field(
        default=0.0,  # fault tests only: hold the relay between broker ack and marking
        validation_alias=AliasChoices(
            "INVOICE_RELAY_PAUSE_BEFORE_MARK_S", "relay_pause_before_mark_s"
        ),
        description="FOR FAULT TESTS ONLY: hold the relay between broker ack and mark",
    )
    db_pool_size: int = Field(
        default=10,
        validation_alias=AliasChoices("INVOICE_DB_POOL_SIZE"),
        description="database connections per process",
    )
    # One process per core is the usual sizing; on Kubernetes keep 1 and scale pods instead.
    workers: int = Field(
        default=1,
        ge=1,
        le=64,
        validation_alias=AliasChoices("INVOICE_WORKERS"),
        description="API worker processes (one per core; on Kubernetes keep 1 and scale pods)",
    )
    # How long a verified token is trusted without a database look-up (revocation delay).
    token_cache_ttl_s: float = Field(
        default=10.0,
        ge=0,
        validation_alias=AliasChoices("INVOICE_TOKEN_CACHE_TTL_S"),
        description="seconds a verified token is trusted without a look-up (revocation delay)",
    )
    # Per-request access lines cost CPU on the hot path; the OTel server spans carry the same.
    access_log: bool = Field(
        default=False,
        validation_alias=AliasChoices("INVOICE_ACCESS_LOG"),
        description="per-request access log lines (costly; server spans carry the same)",
    )


@lru_cache
def get_settings() -> Settings:
    """The process's settings, read once."""
    return Settings()
