"""The dunning service's settings: one object, read from the environment."""

from __future__ import annotations

from functools import lru_cache

from duewise_service import settings as shared
from duewise_service.secret_files import ServiceSettings
from pydantic import AliasChoices, Field, SecretStr


class Settings(ServiceSettings, shared.CommonSettings, shared.ProductionFlag, shared.LastLookToken):
    """Everything the dunning service reads from its environment (Kafka and the admin token:
    `shared.CommonSettings`)."""

    database_url: str = shared.database_url_field("dunning")
    host: str = shared.host_field("DUNNING")
    port: int = shared.port_field("DUNNING", 8002)
    invoice_api_url: str = shared.invoice_api_url_field()
    invoice_token: SecretStr | None = shared.invoice_token_field("DUNNING")
    env: str = shared.env_field()
    clock: str | None = Field(
        default=None,
        validation_alias=AliasChoices("DUNNING_CLOCK", "clock"),
        description="an ISO instant to start the settable clock at (not in production)",
    )
    scheduler_interval_s: float = Field(
        default=1.0,
        validation_alias=AliasChoices("DUNNING_SCHEDULER_INTERVAL_S"),
        description="seconds between the scheduler's due passes",
    )
    scheduler_lease_s: float = Field(
        default=60.0,
        validation_alias=AliasChoices("DUNNING_SCHEDULER_LEASE_S"),
        description="seconds a claim stays with one scheduler before another may retry it",
    )
    scheduler_pause_after_claim_s: float = Field(
        default=0.0,
        validation_alias=AliasChoices("DUNNING_SCHEDULER_PAUSE_AFTER_CLAIM_S"),
        description="FOR FAULT TESTS ONLY: sleep between committing a claim and emitting it",
    )
    scheduler_batch: int = Field(
        default=500,
        validation_alias=AliasChoices("DUNNING_BATCH"),
        description="customers claimed per scheduler pass",
    )
    db_pool_size: int = Field(
        default=10,
        validation_alias=AliasChoices("DUNNING_DB_POOL_SIZE"),
        description="database connections per process",
    )


@lru_cache
def get_settings() -> Settings:
    """The process's settings, read once."""
    return Settings()
