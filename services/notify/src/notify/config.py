"""The notify service's settings: one object, read from the environment."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from duewise_service.secret_files import ServiceSettings
from duewise_service.urls import check_postgres_url, plain_url, sqlalchemy_url
from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import SettingsConfigDict


def _env(*names: str) -> AliasChoices:
    return AliasChoices(*names)


class Settings(ServiceSettings):
    """Everything the notify service reads from its environment."""

    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

    database_url: str = Field(
        default="postgresql://postgres@127.0.0.1:5432/duewise_notify",
        validation_alias=_env("NOTIFY_DATABASE_URL", "DATABASE_URL", "database_url"),
        description="PostgreSQL URL of the service's own database, postgresql:// or postgresql+asyncpg://",
    )
    kafka_bootstrap_servers: str = Field(
        default="127.0.0.1:9092",
        validation_alias=_env("KAFKA_BOOTSTRAP_SERVERS", "kafka_bootstrap_servers"),
        description="Kafka bootstrap servers, host:port[,host:port]",
    )
    kafka_enable_idempotence: bool = Field(
        default=False,
        validation_alias=_env("KAFKA_ENABLE_IDEMPOTENCE"),
        description="idempotent producer: true on real Kafka (the embedded Tansu lacks it)",
    )
    host: str = Field(
        default="0.0.0.0",
        validation_alias=_env("NOTIFY_HOST", "host"),
        description="address the API listens on",
    )
    port: int = Field(
        default=8004,
        validation_alias=_env("NOTIFY_PORT", "port"),
        description="port the API listens on",
    )
    public_url: str = Field(
        default="http://127.0.0.1:8004",
        validation_alias=_env("NOTIFY_PUBLIC_URL", "public_url"),
        description="where customers reach the reply and unsubscribe links",
    )
    admin_token: SecretStr | None = Field(
        default=None,
        validation_alias=_env("DUEWISE_ADMIN_TOKEN", "admin_token"),
        description="the bootstrap admin bearer token for the HTTP API",
    )
    secret_key: SecretStr = Field(
        default=SecretStr("duewise-local-development-only"),
        validation_alias=_env("NOTIFY_SECRET_KEY", "secret_key"),
        description="signs reply and unsubscribe links; required in production",
    )
    env: str = Field(
        default="local",
        validation_alias=_env("DUEWISE_ENV", "env"),
        description="`production` enforces non-default secrets and disables test-only knobs",
    )

    # --- channels ---------------------------------------------------------------------------
    smtp_url: str = Field(
        default="smtp://127.0.0.1:1025",
        validation_alias=_env("SMTP_URL", "smtp_url"),
        description="SMTP server, smtp://[user:password@]host:port (smtps:// for implicit TLS)",
    )
    smtp_pool_size: int = Field(
        default=8,
        validation_alias=_env("NOTIFY_SMTP_POOL_SIZE"),
        description="SMTP connections the sender keeps open",
    )
    mail_from: str = Field(
        default="Accounts Receivable <ar@duewise.local>",
        validation_alias=_env("NOTIFY_MAIL_FROM", "mail_from"),
        description="From header of every mail",
    )
    message_id_domain: str = Field(
        default="duewise.local",
        validation_alias=_env("NOTIFY_MESSAGE_ID_DOMAIN"),
        description="domain part of Message-IDs (replies are matched on them)",
    )
    collections_email: str = Field(
        default="collections@duewise.local",
        validation_alias=_env("NOTIFY_COLLECTIONS_EMAIL", "collections_email"),
        description="where collector alerts go when the account's owner has no address",
    )
    company_name: str = Field(
        default="duewise",
        validation_alias=_env("NOTIFY_COMPANY_NAME"),
        description="the sender company's name in templates",
    )
    sms_url: str = Field(
        default="http://127.0.0.1:8025",
        validation_alias=_env("SMS_URL", "sms_url"),
        description="base URL of a Twilio-shaped SMS API (the local catcher by default)",
    )
    sms_account_sid: str = Field(
        default="ACduewise",
        validation_alias=_env("SMS_ACCOUNT_SID"),
        description="SMS API account id",
    )
    sms_auth_token: SecretStr = Field(
        default=SecretStr("local"),
        validation_alias=_env("SMS_AUTH_TOKEN"),
        description="SMS API auth token",
    )
    sms_from: str = Field(
        default="+15005550006",
        validation_alias=_env("SMS_FROM"),
        description="the number SMS are sent from",
    )
    sms_quiet_start_hour: int = Field(
        default=20,
        validation_alias=_env("NOTIFY_SMS_QUIET_START"),
        description="no SMS from this hour of the customer's local day\u2026",
    )
    sms_quiet_end_hour: int = Field(
        default=8,
        validation_alias=_env("NOTIFY_SMS_QUIET_END"),
        description="\u2026until this hour",
    )
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
        description="Jinja template of the pay-now link in mails",
    )

    # --- safety -----------------------------------------------------------------------------
    rate_limit_email_per_day: int = Field(
        default=10,
        validation_alias=_env("NOTIFY_RATE_LIMIT_EMAIL_PER_DAY"),
        description="at most this many mails to one customer per day",
    )
    rate_limit_sms_per_day: int = Field(
        default=3,
        validation_alias=_env("NOTIFY_RATE_LIMIT_SMS_PER_DAY"),
        description="at most this many SMS to one customer per day",
    )
    good_standing_streak: int = Field(
        default=6,
        validation_alias=_env("NOTIFY_GOOD_STANDING"),
        description="on-time payments in a row that make a customer one in good standing",
    )
    invoice_api_url: str = Field(
        default="http://127.0.0.1:8001",
        validation_alias=_env("INVOICE_API_URL"),
        description="the invoice API, for the last look before a reminder",
    )
    invoice_token: SecretStr | None = Field(
        default=None,
        validation_alias=_env("NOTIFY_INVOICE_TOKEN", "invoice_token"),
        description="token for the last look at the invoice API; DUEWISE_ADMIN_TOKEN if unset",
    )
    last_look_timeout_s: float = Field(
        default=2.0,
        validation_alias=_env("NOTIFY_LAST_LOOK_TIMEOUT_S"),
        description="timeout of the last look; on timeout the reminder waits",
    )

    # --- the sender -------------------------------------------------------------------------
    sender_batch: int = Field(
        default=100,
        validation_alias=_env("NOTIFY_SENDER_BATCH"),
        description="messages the sender claims per pass",
    )
    sender_concurrency: int = Field(
        default=16,
        validation_alias=_env("NOTIFY_SENDER_CONCURRENCY"),
        description="messages in flight per sender",
    )
    sender_lease_s: float = Field(
        default=60.0,
        validation_alias=_env("NOTIFY_SENDER_LEASE_S"),
        description="seconds a claim stays with one sender before another may retry it",
    )
    sender_interval_s: float = Field(
        default=1.0,
        validation_alias=_env("NOTIFY_SENDER_INTERVAL_S"),
        description="seconds between the sender's passes when idle",
    )
    sender_max_attempts: int = Field(
        default=8,
        validation_alias=_env("NOTIFY_SENDER_MAX_ATTEMPTS"),
        description="attempts before a message is marked failed",
    )
    sender_pause_after_send_s: float = Field(
        default=0.0,
        validation_alias=_env("NOTIFY_SENDER_PAUSE_AFTER_SEND_S"),
        description="FOR FAULT TESTS ONLY: sleep between the channel's acceptance and the mark",
    )
    db_pool_size: int = Field(
        default=10,
        validation_alias=_env("NOTIFY_DB_POOL_SIZE"),
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
