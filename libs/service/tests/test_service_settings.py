"""The settings every service shares (duewise_service.settings): the names they are read
under, the checks and derived values, and that a service still orders its own fields."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest
from duewise_service import settings as shared
from duewise_service.secret_files import ServiceSettings
from pydantic import SecretStr, ValidationError

SERVICES = {"invoice": 8001, "dunning": 8002, "risk": 8003, "notify": 8004}


class ExampleSettings(
    ServiceSettings, shared.CommonSettings, shared.ProductionFlag, shared.LastLookToken
):
    """A service built the way the four are."""

    database_url: str = shared.database_url_field("example")
    host: str = shared.host_field("EXAMPLE")
    port: int = shared.port_field("EXAMPLE", 8009)
    invoice_api_url: str = shared.invoice_api_url_field()
    invoice_token: SecretStr | None = shared.invoice_token_field("EXAMPLE")
    env: str = shared.env_field()


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No variable of the test run's own environment (DATABASE_URL…) and no mounted secret."""
    for name in (
        "DATABASE_URL",
        "EXAMPLE_DATABASE_URL",
        "KAFKA_BOOTSTRAP_SERVERS",
        "KAFKA_ENABLE_IDEMPOTENCE",
        "DUEWISE_ADMIN_TOKEN",
        "DUEWISE_ENV",
        "EXAMPLE_INVOICE_TOKEN",
        *(f"{service.upper()}_{what}" for service in SERVICES for what in ("DATABASE_URL", "PORT")),
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DUEWISE_SECRETS_DIR", str(tmp_path))


def test_the_defaults_are_local() -> None:
    settings = ExampleSettings()
    assert settings.database_url == "postgresql://postgres@127.0.0.1:5432/duewise_example"
    assert (settings.host, settings.port) == ("0.0.0.0", 8009)
    assert settings.kafka_bootstrap_servers == "127.0.0.1:9092"
    assert settings.kafka_enable_idempotence is False
    assert settings.admin_token is None
    assert settings.last_look_token is None
    assert settings.production is False


def test_the_shared_names_and_the_service_prefixed_ones_are_read(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://u@db/any")
    monkeypatch.setenv("EXAMPLE_DATABASE_URL", "postgresql+asyncpg://u@db/own")
    monkeypatch.setenv("EXAMPLE_PORT", "9100")
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "k1:9092,k2:9092")
    monkeypatch.setenv("KAFKA_ENABLE_IDEMPOTENCE", "true")
    monkeypatch.setenv("DUEWISE_ADMIN_TOKEN", "admin-secret")
    monkeypatch.setenv("DUEWISE_ENV", "production")
    settings = ExampleSettings()
    # The service's own name wins over the generic DATABASE_URL.
    assert settings.database_url == "postgresql+asyncpg://u@db/own"
    assert settings.sqlalchemy_url == "postgresql+asyncpg://u@db/own"
    assert settings.plain_database_url == "postgresql://u@db/own"
    assert settings.port == 9100
    assert settings.kafka_bootstrap_servers == "k1:9092,k2:9092"
    assert settings.kafka_enable_idempotence is True
    assert settings.production is True
    # Without its own token the last look uses the admin token; with one, its own.
    assert settings.last_look_token == "admin-secret"
    monkeypatch.setenv("EXAMPLE_INVOICE_TOKEN", "own-token")
    assert ExampleSettings().last_look_token == "own-token"


def test_a_database_url_of_another_kind_is_refused() -> None:
    with pytest.raises(ValidationError):
        ExampleSettings(database_url="mysql://u@db/x")


def test_a_service_places_the_fields_it_declares() -> None:
    # The settings catalogue (README "Every setting") lists fields in this order: the shared
    # ones first, then the service's in the order it wrote them, `env` included.
    assert list(ExampleSettings.model_fields) == [
        "database_url",
        "kafka_bootstrap_servers",
        "kafka_enable_idempotence",
        "host",
        "port",
        "admin_token",
        "invoice_api_url",
        "invoice_token",
        "env",
    ]


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_every_service_reads_the_shared_names(
    service: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings_class = importlib.import_module(f"{service}.config").Settings
    assert issubclass(settings_class, shared.CommonSettings)
    monkeypatch.setenv(f"{service.upper()}_DATABASE_URL", f"postgresql://u@db/{service}")
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "broker:9092")
    monkeypatch.setenv("DUEWISE_ADMIN_TOKEN", "admin-secret")
    settings = settings_class()
    assert settings.plain_database_url == f"postgresql://u@db/{service}"
    assert settings.kafka_bootstrap_servers == "broker:9092"
    assert settings.admin_token.get_secret_value() == "admin-secret"
    assert settings.port == SERVICES[service]
