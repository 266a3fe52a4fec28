"""The dunning service's settings: one object, read from the environment."""

from __future__ import annotations

from functools import lru_cache

from duewise_service.secret_files import ServiceSettings
from duewise_service.urls import check_postgres_url, plain_url, sqlalchemy_url
from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import SettingsConfigDict


class Settings(ServiceSettings):
    """Everything the dunning service reads from its environment."""

    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

    database_url: str = Field(
        default="postgresql://postgres@127.0.0.1:5432/duewise_dunning",
        validation_alias=AliasChoices("DUNNING_DATABASE_URL", "DATABASE_URL", "database_url"),
        description="PostgreSQL URL of the service's own database, postgresql:// or postgresql+asyncpg://",
    )
    kafka_bootstrap_servers: str = Field(
        default="127.0.0.1:9092",
        validation_alias=AliasChoices("KAFKA_BOOTSTRAP_SERVERS", "kafka_bootstrap_servers"),
        description="Kafka bootstrap servers, host:port[,host:port]",
    )
    kafka_enable_idempotence: bool = Field(
        default=False,
        validation_alias=AliasChoices("KAFKA_ENABLE_IDEMPOTENCE", "kafka_enable_idempotence"),
        description="idempotent producer: true on real Kafka (the embedded Tansu lacks it)",
    )
    host: str = Field(
        default="0.0.0.0",
        validation_alias=AliasChoices("DUNNING_HOST", "host"),
        description="address the API listens on",
    )
    port: int = Field(
        default=8002,
        validation_alias=AliasChoices("DUNNING_PORT", "port"),
        description="port the API listens on",
    )
    admin_token: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("DUEWISE_ADMIN_TOKEN", "admin_token"),
        description="the bootstrap admin bearer token for the HTTP API",
    )
    invoice_api_url: str = Field(
        default="http://127.0.0.1:8001",
        validation_alias=AliasChoices("INVOICE_API_URL", "invoice_api_url"),
        description="the invoice API, for the last look before a reminder",
    )
    invoice_token: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("DUNNING_INVOICE_TOKEN", "invoice_token"),
        description="token for the last look at the invoice API; DUEWISE_ADMIN_TOKEN if unset",
    )
    env: str = Field(
        default="local",
        validation_alias=AliasChoices("DUEWISE_ENV", "env"),
        description="`production` enforces non-default secrets and disables test-only knobs",
    )
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

    @field_validator("database_url")
    @classmethod
    def _known_scheme(cls, v: str) -> str:
        return check_postgres_url(v)

    @property
    def production(self) -> bool:
        return self.env == "production"

    @property
    def sqlalchemy_url(self) -> str:
        return sqlalchemy_url(self.database_url)

    @property
    def plain_database_url(self) -> str:
        return plain_url(self.database_url)

    @property
    def last_look_token(self) -> str | None:
        token = self.invoice_token or self.admin_token
        return token.get_secret_value() if token is not None else None


@lru_cache
def get_settings() -> Settings:
    """The process's settings, read once."""
    return Settings()
