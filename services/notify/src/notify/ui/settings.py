"""The collector UI's settings: where the other services are, and how long sessions last.

A settings class of its own (read from the same environment) so that the UI's knobs live
beside the UI; the notify service's `Settings` still holds the invoice URL and admin token.
"""

from __future__ import annotations

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class UiSettings(BaseSettings):
    """Everything the collector UI reads from its environment."""

    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

    dunning_api_url: str = Field(
        default="http://127.0.0.1:8002",
        validation_alias=AliasChoices("DUNNING_API_URL", "dunning_api_url"),
        description="the dunning API the collector UI reads and acts on",
    )
    risk_api_url: str = Field(
        default="http://127.0.0.1:8003",
        validation_alias=AliasChoices("RISK_API_URL", "risk_api_url"),
        description="the risk API the collector UI reads",
    )
    catcher_url: str = Field(
        default="http://127.0.0.1:8025",
        validation_alias=AliasChoices("CATCHER_URL", "catcher_url"),
        description="the local mail and SMS catcher's HTTP API (`make run`), shown at /mail",
    )
    session_idle_minutes: int = Field(
        default=8 * 60,
        ge=1,
        validation_alias=AliasChoices("NOTIFY_UI_SESSION_IDLE_MINUTES", "session_idle_minutes"),
        description="a session not used for this long is over; the user signs in again",
    )
    login_max_failures: int = Field(
        default=5,
        ge=1,
        validation_alias=AliasChoices("NOTIFY_UI_LOGIN_MAX_FAILURES", "login_max_failures"),
        description="failed sign-ins of one user name before it is locked for the window",
    )
    login_window_minutes: int = Field(
        default=15,
        ge=1,
        validation_alias=AliasChoices("NOTIFY_UI_LOGIN_WINDOW_MINUTES", "login_window_minutes"),
        description="failed sign-ins of one user name counted over this window",
    )
    secure_cookies: bool = Field(
        default=False,
        validation_alias=AliasChoices("NOTIFY_UI_SECURE_COOKIES", "secure_cookies"),
        description="mark the session cookie Secure (serve the UI over HTTPS)",
    )
    service_timeout_s: float = Field(
        default=5.0,
        validation_alias=AliasChoices("NOTIFY_UI_SERVICE_TIMEOUT_S"),
        description="timeout of the UI's calls to the other services",
    )
    page_call_budget_s: float = Field(
        default=2.0,
        gt=0,
        validation_alias=AliasChoices("NOTIFY_UI_PAGE_CALL_BUDGET_S", "page_call_budget_s"),
        description=(
            "seconds each read behind a page (the customer page, the worklist's dunning part,"
            " an action's owner check) may take; a section whose service is slower, or answers"
            " 5xx, says so and the page shows the rest"
        ),
    )
