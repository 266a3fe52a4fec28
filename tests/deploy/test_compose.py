"""docker-compose.yml is a valid Compose file that runs what the code has (read, not run:
there is no Docker engine here).

- valid against the Compose Specification's JSON schema (vendored: schemas/README.md);
- every duewise process runs a command its CLI has, with exactly the environment its code
  reads (no variable the code ignores, none the code needs missing: `duewise-dev settings`);
- ports, health checks, one-shots and dependencies agree with the code and each other;
- third-party images are pinned; telemetry goes collector -> Jaeger and Prometheus.
"""

from __future__ import annotations

import importlib
import inspect
import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import typer
import yaml
from duewise_dev.services import SERVICES, all_topics
from duewise_dev.settings_catalogue import catalogue, env_names

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = ROOT / "tests/deploy/schemas/compose-spec.json"
METRICS_PORT = "9464"
# Settings whose default points at this machine and that compose leaves at it, and why.
LEFT_LOCAL = {
    "SMS_URL": "no SMS gateway in compose: set it to your provider (SMS sends fail until then)",
    "CATCHER_URL": "the `make run` catcher's page in the UI; Mailpit has its own, :8025",
}


def compose() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return doc


def duewise_services() -> dict[str, dict[str, Any]]:
    """Compose service name -> definition, for the ones built from this repository."""
    return {n: s for n, s in compose()["services"].items() if "build" in s}


def process_of(definition: dict[str, Any]) -> tuple[str, str]:
    """(duewise service, process) a compose service runs: ("dunning", "scheduler")."""
    module, process = definition["command"]
    return module.removesuffix(".cli"), process


def commands(app: typer.Typer) -> set[str]:
    return {c.name or (c.callback.__name__ if c.callback else "") for c in app.registered_commands}


def validation_errors(doc: dict[str, Any]) -> list[str]:
    # The file says draft 2019-09 (with an old-style $schema URL jsonschema does not know).
    validator = jsonschema.Draft201909Validator(json.loads(SCHEMA.read_text()))
    errors = sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path))
    return [f"{list(e.absolute_path)}: {e.message}" for e in errors]


def test_valid_against_the_compose_specification() -> None:
    errors = validation_errors(compose())
    assert not errors, "\n".join(errors)


def test_the_schema_check_rejects_what_compose_would() -> None:
    doc = compose()
    doc["services"]["invoice-api"]["depends_on"]["topics"]["condition"] = "service_done"
    doc["services"]["invoice-api"]["restart_policy"] = "always"
    assert len(validation_errors(doc)) >= 2


def test_every_built_service_runs_a_command_the_code_has() -> None:
    built = duewise_services()
    assert built, "no duewise services in docker-compose.yml"
    for name, definition in built.items():
        module, command = definition["command"]
        app = importlib.import_module(module).app
        assert command in commands(app), f"{name}: {module} has no command {command!r}"


def test_every_process_of_every_service_runs_once_plus_its_migration() -> None:
    expected = {(s.name, "migrate") for s in SERVICES} | {
        (s.name, p.name.removeprefix(f"{s.name}-")) for s in SERVICES for p in s.processes
    }
    assert sorted(process_of(d) for d in duewise_services().values()) == sorted(expected)


@pytest.mark.parametrize("name", sorted(duewise_services()))
def test_environment_is_what_the_code_reads(name: str) -> None:
    definition = duewise_services()[name]
    service, process = process_of(definition)
    given = set(definition.get("environment", {}))
    ignored = given - env_names(service, process)
    assert not ignored, f"{name}: the code does not read {sorted(ignored)}"
    for setting in catalogue()[service]:
        if not setting.read_by(process):
            continue
        if process == "migrate" and setting.env != f"{service.upper()}_DATABASE_URL":
            continue  # a migration reads its database URL and nothing else
        needed = setting.required or (setting.local_default and setting.env not in LEFT_LOCAL)
        if needed:
            assert given & set(setting.names), f"{name}: needs {setting.env} ({setting.default})"


def test_each_service_gets_its_own_database_on_the_postgres_service() -> None:
    doc = compose()
    init = (ROOT / "deploy/compose/initdb.sql").read_text()
    postgres_db = doc["services"]["postgres"]["environment"]["POSTGRES_DB"]
    for name, definition in duewise_services().items():
        service, _ = process_of(definition)
        url = definition["environment"][f"{service.upper()}_DATABASE_URL"]
        assert re.fullmatch(rf"postgresql://duewise:[^@]+@postgres:5432/duewise_{service}", url), (
            name,
            url,
        )
    for service in SERVICES:
        assert service.database == postgres_db or f"CREATE DATABASE {service.database}" in init


def test_topics_one_shot_creates_every_topic() -> None:
    created = compose()["services"]["topics"]["command"][0]
    for topic, partitions in all_topics().items():
        assert topic in created, f"topic {topic} is not created by the topics one-shot"
        assert f"--partitions {partitions}" in created


def test_apis_publish_their_port_and_check_their_health_endpoint() -> None:
    ports = {s.name: s.port for s in SERVICES}
    for name, definition in duewise_services().items():
        service, process = process_of(definition)
        if process == "migrate":
            assert "healthcheck" not in definition
            continue
        probe = " ".join(definition["healthcheck"]["test"])
        if process == "api":
            port = int(definition["environment"].get(f"{service.upper()}_PORT", ports[service]))
            assert definition["ports"] == [f"{port}:{port}"], name
            assert f"http://127.0.0.1:{port}/healthz" in probe, name
            health = importlib.import_module(f"{service}.api.health")
            assert "/healthz" in {r.path for r in health.router.routes}  # type: ignore[attr-defined]
        else:
            assert definition["environment"]["METRICS_PORT"] == METRICS_PORT, name
            assert f"http://127.0.0.1:{METRICS_PORT}/livez" in probe, name
            assert "ports" not in definition, f"{name}: a worker has nothing to publish"
    worker_http = importlib.import_module("duewise_service.worker_http")
    assert '"/livez"' in inspect.getsource(worker_http)


def test_one_shots_and_dependencies() -> None:
    services = compose()["services"]
    for name, definition in services.items():
        for dependency, how in definition.get("depends_on", {}).items():
            assert dependency in services, f"{name} depends on unknown {dependency}"
            condition = how["condition"]
            if condition == "service_completed_successfully":
                assert services[dependency].get("restart") == "no", dependency  # a one-shot
            if condition == "service_healthy":
                assert "healthcheck" in services[dependency], dependency
    for name, definition in duewise_services().items():
        service, process = process_of(definition)
        depends = definition["depends_on"]
        if process == "migrate":
            assert definition["restart"] == "no"
            assert depends == {"postgres": {"condition": "service_healthy"}}
            continue
        assert definition["restart"] == "unless-stopped", name
        for one_shot in (f"{service}-migrate", "topics"):
            assert depends[one_shot] == {"condition": "service_completed_successfully"}, name
        if "INVOICE_API_URL" in definition["environment"] and process in ("scheduler", "sender"):
            assert depends["invoice-api"] == {"condition": "service_healthy"}, name


def test_third_party_images_are_pinned_and_kafka_runs_kraft() -> None:
    services = compose()["services"]
    for name, definition in services.items():
        if "build" in definition:
            assert definition["build"] == "."
            continue
        image = definition["image"]
        assert re.fullmatch(r"[\w./-]+:v?\d+\.\d+(\.\d+)?[\w.-]*(@sha256:[0-9a-f]{64})?", image), (
            f"{name}: {image} is not pinned to a version"
        )
    kafka = services["kafka"]
    assert kafka["image"].startswith("apache/kafka:")
    assert "controller" in kafka["environment"]["KAFKA_PROCESS_ROLES"]
    assert "KAFKA_ZOOKEEPER_CONNECT" not in kafka["environment"]


def test_telemetry_goes_through_the_collector_to_jaeger_and_prometheus() -> None:
    services = compose()["services"]
    for name, definition in duewise_services().items():
        env = definition["environment"]
        if process_of(definition)[1] == "migrate":
            continue
        assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://otel-collector:4318", name
        assert env["OTEL_SERVICE_NAME"] == f"duewise-{process_of(definition)[0]}", name
    collector = services["otel-collector"]
    assert collector["image"].startswith("otel/opentelemetry-collector-contrib:")
    config = yaml.safe_load((ROOT / "deploy/compose/otel-collector.yaml").read_text())
    assert config["receivers"]["otlp"]["protocols"]["http"]["endpoint"].endswith(":4318")
    pipelines = config["service"]["pipelines"]
    assert pipelines["traces"]["exporters"] == ["otlp/jaeger"]
    assert config["exporters"]["otlp/jaeger"]["endpoint"] == "jaeger:4317"
    assert services["jaeger"]["image"].startswith("jaegertracing/jaeger:2.")
    assert "16686:16686" in services["jaeger"]["ports"]
    assert "prometheus" in pipelines["metrics"]["exporters"]
    port = config["exporters"]["prometheus"]["endpoint"].rsplit(":", 1)[1]
    scrape = yaml.safe_load((ROOT / "deploy/compose/prometheus.yml").read_text())
    targets = {
        t for job in scrape["scrape_configs"] for c in job["static_configs"] for t in c["targets"]
    }
    assert f"otel-collector:{port}" in targets
