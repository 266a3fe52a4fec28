"""The settings every service reads under the same names, defined once.

A service's `Settings(ServiceSettings, shared.CommonSettings, …)` takes them from here
(dunning's config.py uses all of them).

`CommonSettings` holds the fields every service has (the database URL and its two forms,
Kafka, the listen address, the admin token), its validator and properties. The fields a
service names with its own prefix (DUNNING_DATABASE_URL, DUNNING_PORT…) are declared by the
service with a helper, so their names, defaults and descriptions are still written once.
`DUEWISE_ENV` and the last-look fields are placed by the service too (helpers again): pydantic
puts inherited fields first, and the settings catalogue (README "Every setting") lists a
service's settings in field order, so where they stand is the service's to say.

`CommonSettings` is a plain model, not a `BaseSettings`: it is never read on its own, only as
part of a service's `Settings`, so the catalogue (which lists the `BaseSettings` classes of
libs/ as read by every process) lists its fields under each service that inherits them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import AliasChoices, BaseModel, Field, SecretStr, field_validator
from pydantic_settings import SettingsConfigDict

from duewise_service.urls import check_postgres_url, plain_url, sqlalchemy_url

DATABASE_URL_DESCRIPTION = (
    "PostgreSQL URL of the service's own database, postgresql:// or postgresql+asyncpg://"
)


def database_url_field(service: str, description: str = DATABASE_URL_DESCRIPTION) -> Any:
    """The service's database URL: <SERVICE>_DATABASE_URL, else DATABASE_URL, else the local
    database duewise_<service>."""
    return Field(
        default=f"postgresql://postgres@127.0.0.1:5432/duewise_{service}",
        validation_alias=AliasChoices(
            f"{service.upper()}_DATABASE_URL", "DATABASE_URL", "database_url"
        ),
        description=description,
    )


def host_field(prefix: str) -> Any:
    """<PREFIX>_HOST: the address the service's API listens on."""
    return Field(
        default="0.0.0.0",
        validation_alias=AliasChoices(f"{prefix}_HOST", "host"),
        description="address the API listens on",
    )


def port_field(prefix: str, default: int) -> Any:
    """<PREFIX>_PORT: the port the service's API listens on."""
    return Field(
        default=default,
        validation_alias=AliasChoices(f"{prefix}_PORT", "port"),
        description="port the API listens on",
    )


class CommonSettings(BaseModel):
    """The fields, validator and properties every service's settings have."""

    # What every service's settings were configured with: unknown variables are the rest of
    # the environment, and tests construct settings by field name. (A SettingsConfigDict, the
    # type BaseSettings declares, so that the two bases of a service's Settings agree.)
    model_config: ClassVar[SettingsConfigDict] = SettingsConfigDict(
        extra="ignore", populate_by_name=True
    )

    # Declared by each service with `database_url_field`, `host_field` and `port_field` (their
    # names carry the service's prefix); declared here for their place and their type.
    database_url: str
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
    host: str
    port: int
    admin_token: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("DUEWISE_ADMIN_TOKEN", "admin_token"),
        description="the bootstrap admin bearer token for the HTTP API",
    )

    @field_validator("database_url")
    @classmethod
    def _known_scheme(cls, v: str) -> str:
        return check_postgres_url(v)

    @property
    def sqlalchemy_url(self) -> str:
        """The database URL for SQLAlchemy's asyncpg dialect."""
        return sqlalchemy_url(self.database_url)

    @property
    def plain_database_url(self) -> str:
        """The database URL as libpq and asyncpg take it (postgresql://)."""
        return plain_url(self.database_url)


def env_field() -> Any:
    """DUEWISE_ENV: `production` or anything else (local, test…)."""
    return Field(
        default="local",
        validation_alias=AliasChoices("DUEWISE_ENV", "env"),
        description="`production` enforces non-default secrets and disables test-only knobs",
    )


class ProductionFlag:
    """`production` for settings that declare `env: str = env_field()`.

    A plain class whose `env` exists for the type checker only: an annotation here would make
    pydantic put `env` before the service's own fields.
    """

    if TYPE_CHECKING:
        env: str

    @property
    def production(self) -> bool:
        return self.env == "production"


def invoice_api_url_field() -> Any:
    """INVOICE_API_URL: where a service takes its last look at an invoice's balance."""
    return Field(
        default="http://127.0.0.1:8001",
        validation_alias=AliasChoices("INVOICE_API_URL", "invoice_api_url"),
        description="the invoice API, for the last look before a reminder",
    )


def invoice_token_field(prefix: str) -> Any:
    """<PREFIX>_INVOICE_TOKEN: the service's own token for the last look."""
    return Field(
        default=None,
        validation_alias=AliasChoices(f"{prefix}_INVOICE_TOKEN", "invoice_token"),
        description="token for the last look at the invoice API; DUEWISE_ADMIN_TOKEN if unset",
    )


class LastLookToken:
    """`last_look_token` for settings that declare `invoice_token = invoice_token_field(…)`
    (and inherit `admin_token` from `CommonSettings`); plain for the reason `ProductionFlag`
    is."""

    if TYPE_CHECKING:
        invoice_token: SecretStr | None
        admin_token: SecretStr | None

    @property
    def last_look_token(self) -> str | None:
        """The service's own token for the invoice API, else the admin token."""
        token = self.invoice_token or self.admin_token
        return token.get_secret_value() if token is not None else None
