"""The risk service's settings: one object, read from the environment."""

from __future__ import annotations

from functools import lru_cache

from duewise_service import settings as shared
from duewise_service.secret_files import ServiceSettings
from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from risk.domain.thresholds import Thresholds


class ThresholdSettings(BaseSettings, Thresholds):
    """Every threshold of `Thresholds`, overridable as RISK_<NAME> (RISK_PARTIAL_RUN=4)."""

    model_config = SettingsConfigDict(env_prefix="RISK_", extra="ignore", frozen=True)


class Settings(ServiceSettings, shared.CommonSettings, shared.ProductionFlag):
    """Everything the risk service reads from its environment (Kafka and the admin token:
    `shared.CommonSettings`)."""

    database_url: str = shared.database_url_field("risk")
    host: str = shared.host_field("RISK")
    port: int = shared.port_field("RISK", 8003)
    env: str = shared.env_field()
    db_pool_size: int = Field(
        default=10,
        validation_alias=AliasChoices("RISK_DB_POOL_SIZE"),
        description="database connections per process",
    )
    thresholds: Thresholds = Field(
        default_factory=lambda: Thresholds(**ThresholdSettings().model_dump())
    )


@lru_cache
def get_settings() -> Settings:
    """The process's settings, read once."""
    return Settings()
