"""The invoice service's settings: one object, read from the environment."""

from __future__ import annotations

from functools import lru_cache

from duewise_service.secret_files import ServiceSettings
from duewise_service.urls import check_postgres_url, plain_url, sqlalchemy_url
from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import SettingsConfigDict


class Settings(ServiceSettings):
    """Everything the invoice service reads from its environment."""

    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

    database_url: str = Field(
        default="postgresql://postgres@127.0.0.1:5432/duewise_invoice",
        validation_alias=AliasChoices("INVOICE_DATABASE_URL", "DATABASE_URL", "database_url"),
        description="PostgreSQL URL, postgresql:// or postgresql+asyncpg://",
    )
    kafka_bootstrap_servers: str = Field(
        default="127.0.0.1:9092",
        validation_alias=AliasChoices("KAFKA_BOOTSTRAP_SERVERS", "kafka_bootstrap_servers"),
        description="Kafka bootstrap servers, host:port[,host:port]",
    )
    kafka_enable_idempotence: bool = Field(
        default=False,  # the embedded Tansu broker does not support InitProducerId
        validation_alias=AliasChoices("KAFKA_ENABLE_IDEMPOTENCE", "kafka_enable_idempotence"),
        description="idempotent producer: true on real Kafka (the embedded Tansu lacks it)",
    )
    host: str = Field(
        default="0.0.0.0",
        validation_alias=AliasChoices("INVOICE_HOST", "host"),
        description="address the API listens on",
    )
    port: int = Field(
        default=8001,
        validation_alias=AliasChoices("INVOICE_PORT", "port"),
        description="port the API listens on",
    )
    admin_token: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("DUEWISE_ADMIN_TOKEN", "admin_token"),
        description="the bootstrap admin bearer token for the HTTP API",
    )
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

    @field_validator("database_url")
    @classmethod
    def _known_scheme(cls, v: str) -> str:
        return check_postgres_url(v)

    @property
    def sqlalchemy_url(self) -> str:
        return sqlalchemy_url(self.database_url)

    @property
    def plain_database_url(self) -> str:
        return plain_url(self.database_url)


@lru_cache
def get_settings() -> Settings:
    """The process's settings, read once."""
    return Settings()
