"""The settings catalogue: found in the code, every entry explained, and README.md is current."""

from __future__ import annotations

from pathlib import Path

from duewise_dev.settings_catalogue import SERVICE_NAMES, catalogue, markdown, readme_table

ROOT = Path(__file__).resolve().parents[2]


def test_readme_every_setting_table_is_the_generated_one() -> None:
    table = readme_table((ROOT / "README.md").read_text())
    assert table is not None, "README.md has no generated settings table"
    assert table == markdown(), (
        "README.md's 'Every setting' table is stale: run "
        "`.venv/bin/duewise-dev settings --readme README.md`"
    )


def test_every_setting_has_a_meaning() -> None:
    undescribed = [
        f"{service}: {s.env} ({s.source})"
        for service, settings in catalogue().items()
        for s in settings
        if not s.description.strip()
    ]
    assert not undescribed, (
        f"add Field(description=...) or a comment above the field: {undescribed}"
    )


def test_the_catalogue_finds_settings_classes_and_plain_reads_in_every_service() -> None:
    settings = catalogue()
    assert set(settings) == set(SERVICE_NAMES)
    for service in SERVICE_NAMES:
        names = {n for s in settings[service] for n in s.names}
        # its own Settings class, the Kafka settings, and the OpenTelemetry plain reads
        assert f"{service.upper()}_DATABASE_URL" in names
        assert {"KAFKA_BOOTSTRAP_SERVERS", "OTEL_EXPORTER_OTLP_ENDPOINT"} <= names
    risk = {s.env: s for s in settings["risk"]}
    assert risk["RISK_PARTIAL_RUN"].default == "3"  # a second settings class, with a prefix
    notify = {s.env: s for s in settings["notify"]}
    assert notify["CATCHER_URL"].read_by("api")  # the collector UI's setting: the API only
    assert not notify["CATCHER_URL"].read_by("sender")
