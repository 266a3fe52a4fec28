"""The notify service's settings: one object, read from the environment."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from duewise_service import settings as shared
from duewise_service.secret_files import ServiceSettings
from pydantic import AliasChoices, Field, SecretStr


def _env(*names: str) -> AliasChoices:
    return AliasChoices(*names)


class Settings(ServiceSettings, shared.CommonSettings, shared.ProductionFlag, shared.LastLookToken):
    """Everything the notify service reads from its environment (Kafka and the admin token:
    `shared.CommonSettings`)."""

    database_url: str = shared.database_url_field("notify")
    host: str = shared.host_field("NOTIFY")
    port: int = shared.port_field("NOTIFY", 8004)
    public_url: str = Field(
        default="http://127.0.0.1:8004",
        validation_alias=_env("NOTIFY_PUBLIC_URL", "public_url"),
        description="where customers reach the reply and unsubscribe links",
    )
    secret_key: SecretStr = Field(
        default=SecretStr("duewise-local-development-only"),
        validation_alias=_env("NOTIFY_SECRET_KEY", "secret_key"),
        description="signs reply and unsubscribe links; required in production",
    )
    env: str = shared.env_field()

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
    invoice_api_url: str = shared.invoice_api_url_field()
    invoice_token: SecretStr | None = shared.invoice_token_field("NOTIFY")
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


@lru_cache
def get_settings() -> Settings:
    """The process's settings, read once."""
    return Settings()
