"""The notify service's settings: one object, read from the environment."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from duewise_service.urls import check_postgres_url, plain_url, sqlalchemy_url
from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


def _env(*names: str) -> AliasChoices:
    return AliasChoices(*names)


class Settings(BaseSettings):
    """Everything the notify service reads from its environment."""

    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

    database_url: str = Field(
        default="postgresql://postgres@127.0.0.1:5432/duewise_notify",
        validation_alias=_env("NOTIFY_DATABASE_URL", "DATABASE_URL", "database_url"),
    )
    kafka_bootstrap_servers: str = Field(
        default="127.0.0.1:9092",
        validation_alias=_env("KAFKA_BOOTSTRAP_SERVERS", "kafka_bootstrap_servers"),
    )
    kafka_enable_idempotence: bool = Field(
        default=False, validation_alias=_env("KAFKA_ENABLE_IDEMPOTENCE")
    )
    host: str = Field(default="0.0.0.0", validation_alias=_env("NOTIFY_HOST", "host"))
    port: int = Field(default=8004, validation_alias=_env("NOTIFY_PORT", "port"))
    public_url: str = Field(
        default="http://127.0.0.1:8004",
        validation_alias=_env("NOTIFY_PUBLIC_URL", "public_url"),
        description="where customers reach the reply and unsubscribe links",
    )
    admin_token: SecretStr | None = Field(
        default=None, validation_alias=_env("DUEWISE_ADMIN_TOKEN", "admin_token")
    )
    secret_key: SecretStr = Field(
        default=SecretStr("duewise-local-development-only"),
        validation_alias=_env("NOTIFY_SECRET_KEY", "secret_key"),
        description="signs reply and unsubscribe links; required in production",
    )
    env: str = Field(default="local", validation_alias=_env("DUEWISE_ENV", "env"))

    # --- channels ---------------------------------------------------------------------------
    smtp_url: str = Field(
        default="smtp://127.0.0.1:1025", validation_alias=_env("SMTP_URL", "smtp_url")
    )
    smtp_pool_size: int = Field(default=8, validation_alias=_env("NOTIFY_SMTP_POOL_SIZE"))
    mail_from: str = Field(
        default="Accounts Receivable <ar@duewise.local>",
        validation_alias=_env("NOTIFY_MAIL_FROM", "mail_from"),
    )
    message_id_domain: str = Field(
        default="duewise.local", validation_alias=_env("NOTIFY_MESSAGE_ID_DOMAIN")
    )
    collections_email: str = Field(
        default="collections@duewise.local",
        validation_alias=_env("NOTIFY_COLLECTIONS_EMAIL", "collections_email"),
        description="where collector alerts go when the account's owner has no address",
    )
    company_name: str = Field(default="duewise", validation_alias=_env("NOTIFY_COMPANY_NAME"))
    sms_url: str = Field(
        default="http://127.0.0.1:8025",
        validation_alias=_env("SMS_URL", "sms_url"),
        description="base URL of a Twilio-shaped SMS API (the local catcher by default)",
    )
    sms_account_sid: str = Field(default="ACduewise", validation_alias=_env("SMS_ACCOUNT_SID"))
    sms_auth_token: SecretStr = Field(
        default=SecretStr("local"), validation_alias=_env("SMS_AUTH_TOKEN")
    )
    sms_from: str = Field(default="+15005550006", validation_alias=_env("SMS_FROM"))
    sms_quiet_start_hour: int = Field(default=20, validation_alias=_env("NOTIFY_SMS_QUIET_START"))
    sms_quiet_end_hour: int = Field(default=8, validation_alias=_env("NOTIFY_SMS_QUIET_END"))
    webhook_allow_private: bool = Field(
        default=False,
        validation_alias=_env("NOTIFY_WEBHOOK_ALLOW_PRIVATE", "webhook_allow_private"),
        description="allow webhook targets on private or loopback addresses (SSRF guard off)",
    )
    template_dir: Path | None = Field(
        default=None,
        validation_alias=_env("NOTIFY_TEMPLATE_DIR", "template_dir"),
        description="a folder whose templates override the packaged ones, file by file",
    )
    payment_link_template: str = Field(
        default=(
            "https://pay.example.com/{{ customer.id }}"
            "?invoice={{ invoice.number if invoice else '' }}"
        ),
        validation_alias=_env("NOTIFY_PAYMENT_LINK_TEMPLATE", "payment_link_template"),
    )

    # --- safety -----------------------------------------------------------------------------
    rate_limit_email_per_day: int = Field(
        default=10, validation_alias=_env("NOTIFY_RATE_LIMIT_EMAIL_PER_DAY")
    )
    rate_limit_sms_per_day: int = Field(
        default=3, validation_alias=_env("NOTIFY_RATE_LIMIT_SMS_PER_DAY")
    )
    good_standing_streak: int = Field(default=6, validation_alias=_env("NOTIFY_GOOD_STANDING"))
    invoice_api_url: str = Field(
        default="http://127.0.0.1:8001", validation_alias=_env("INVOICE_API_URL")
    )
    invoice_token: SecretStr | None = Field(
        default=None,
        validation_alias=_env("NOTIFY_INVOICE_TOKEN", "invoice_token"),
        description="token for the last look at the invoice API; DUEWISE_ADMIN_TOKEN if unset",
    )
    last_look_timeout_s: float = Field(
        default=2.0, validation_alias=_env("NOTIFY_LAST_LOOK_TIMEOUT_S")
    )

    # --- the sender -------------------------------------------------------------------------
    sender_batch: int = Field(default=100, validation_alias=_env("NOTIFY_SENDER_BATCH"))
    sender_concurrency: int = Field(default=16, validation_alias=_env("NOTIFY_SENDER_CONCURRENCY"))
    sender_lease_s: float = Field(default=60.0, validation_alias=_env("NOTIFY_SENDER_LEASE_S"))
    sender_interval_s: float = Field(default=1.0, validation_alias=_env("NOTIFY_SENDER_INTERVAL_S"))
    sender_max_attempts: int = Field(default=8, validation_alias=_env("NOTIFY_SENDER_MAX_ATTEMPTS"))
    sender_pause_after_send_s: float = Field(
        default=0.0,
        validation_alias=_env("NOTIFY_SENDER_PAUSE_AFTER_SEND_S"),
        description="FOR FAULT TESTS ONLY: sleep between the channel's acceptance and the mark",
    )
    db_pool_size: int = Field(default=10, validation_alias=_env("NOTIFY_DB_POOL_SIZE"))

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
