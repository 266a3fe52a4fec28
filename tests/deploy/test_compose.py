"""docker-compose.yml runs what the code has: every command exists, every database and topic
a process needs is given to it. (No Docker engine here; the full check is issue #7's.)"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import typer
import yaml

ROOT = Path(__file__).resolve().parents[2]


def compose() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return doc


def commands(app: typer.Typer) -> set[str]:
    return {c.name or (c.callback.__name__ if c.callback else "") for c in app.registered_commands}


def test_every_built_service_runs_a_command_the_code_has() -> None:
    built = {n: s for n, s in compose()["services"].items() if "build" in s}
    assert built, "no duewise services in docker-compose.yml"
    for name, service in built.items():
        module, command = service["command"]
        app = importlib.import_module(module).app
        assert command in commands(app), f"{name}: {module} has no command {command!r}"


def test_each_service_gets_its_own_database_and_the_topics_exist() -> None:
    doc = compose()
    env = doc["x-duewise-env"]
    from duewise_dev.services import SERVICES, all_topics

    for service in SERVICES:
        url = env[f"{service.name.upper()}_DATABASE_URL"]
        assert url.endswith(f"/{service.database}"), url
    init = (ROOT / "deploy/compose/initdb.sql").read_text()
    postgres_db = doc["services"]["postgres"]["environment"]["POSTGRES_DB"]
    for service in SERVICES:
        assert service.database == postgres_db or f"CREATE DATABASE {service.database}" in init
    created = doc["services"]["topics"]["command"][0]
    for topic in all_topics():
        assert topic in created, f"topic {topic} is not created by the topics one-shot"
