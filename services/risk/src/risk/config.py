"""The risk service's settings: one object, read from the environment."""

from __future__ import annotations

from functools import lru_cache

from duewise_service.secret_files import ServiceSettings
from duewise_service.urls import check_postgres_url, plain_url, sqlalchemy_url
from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from risk.domain.thresholds import Thresholds


class ThresholdSettings(BaseSettings, Thresholds):
    """Every threshold of `Thresholds`, overridable as RISK_<NAME> (RISK_PARTIAL_RUN=4)."""

    model_config = SettingsConfigDict(env_prefix="RISK_", extra="ignore", frozen=True)


class Settings(ServiceSettings):
    """Everything the risk service reads from its environment."""

    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

    database_url: str = Field(
        default="postgresql://postgres@127.0.0.1:5432/duewise_risk",
        validation_alias=AliasChoices("RISK_DATABASE_URL", "DATABASE_URL", "database_url"),
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
        validation_alias=AliasChoices("RISK_HOST", "host"),
        description="address the API listens on",
    )
    port: int = Field(
        default=8003,
        validation_alias=AliasChoices("RISK_PORT", "port"),
        description="port the API listens on",
    )
    admin_token: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("DUEWISE_ADMIN_TOKEN", "admin_token"),
        description="the bootstrap admin bearer token for the HTTP API",
    )
    env: str = Field(
        default="local",
        validation_alias=AliasChoices("DUEWISE_ENV", "env"),
        description="`production` enforces non-default secrets and disables test-only knobs",
    )
    db_pool_size: int = Field(
        default=10,
        validation_alias=AliasChoices("RISK_DB_POOL_SIZE"),
        description="database connections per process",
    )
    thresholds: Thresholds = Field(
        default_factory=lambda: Thresholds(**ThresholdSettings().model_dump())
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


@lru_cache
def get_settings() -> Settings:
    """The process's settings, read once."""
    return Settings()
