"""Dashboards and alerts as code: both files parse, every metric they query is one the code
registers (no panel for a metric that does not exist), every duewise metric has a panel,
and every alert links to a runbook that the README has."""

from __future__ import annotations

import json
import re
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import yaml
from opentelemetry.metrics import Counter, Histogram, UpDownCounter, _Gauge

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "observability" / "grafana-dashboard.json"
RULES = ROOT / "deploy" / "observability" / "prometheus-rules.yaml"
METRIC = re.compile(r"\b((?:duewise|http_server)_[a-z_]+|target_info)\b")
_UNITS = {"s": "_seconds", "ms": "_milliseconds", "By": "_bytes"}


def _prometheus_names(instrument: Any) -> set[str]:
    """The series names the Prometheus exporter gives an instrument (unit and type suffixes)."""
    name = getattr(instrument, "name", None) or instrument._name
    unit = getattr(instrument, "unit", None) or getattr(instrument, "_unit", "") or ""
    base = name + _UNITS.get(unit, "")
    if isinstance(instrument, Counter):
        return {base + "_total"}
    if isinstance(instrument, Histogram):
        return {base + suffix for suffix in ("_bucket", "_count", "_sum")}
    assert isinstance(instrument, _Gauge | UpDownCounter), instrument
    return {base}


def _instruments(*modules: ModuleType) -> list[Any]:
    kinds = (Counter, Histogram, UpDownCounter, _Gauge)
    return [v for m in modules for v in vars(m).values() if isinstance(v, kinds)]


def registered_duewise_names() -> set[str]:
    import duewise_events.metrics
    import dunning.scheduler
    import notify.sender

    found = _instruments(duewise_events.metrics, dunning.scheduler, notify.sender)
    assert len(found) >= 13, found
    return set().union(*(_prometheus_names(i) for i in found))


async def scraped_http_names() -> set[str]:
    """The API's request metrics, as an instrumented app's `/metrics` shows them."""
    from duewise_service.telemetry import instrument_api, setup_process
    from fastapi import FastAPI

    setup_process("duewise-dashboard-test")
    app = FastAPI()

    @app.get("/v1/things/{thing_id}")
    async def thing(thing_id: str) -> dict[str, str]:
        return {"id": thing_id}

    instrument_api(app)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://api.test"
    ) as client:
        assert (await client.get("/v1/things/1")).status_code == 200
        scrape = (await client.get("/metrics")).text
    return {m.group(1) for m in re.finditer(r"^([a-z_]+)(?:\{| )", scrape, re.MULTILINE)}


def dashboard_exprs() -> list[str]:
    doc = json.loads(DASHBOARD.read_text())
    assert doc["panels"], "the dashboard has no panels"
    exprs = [t["expr"] for p in doc["panels"] for t in p["targets"]]
    assert all(p["title"] and p["targets"] for p in doc["panels"])
    for variable in doc["templating"]["list"]:
        if isinstance(variable.get("query"), dict):
            exprs.append(variable["query"]["query"])
    return exprs


def rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load(RULES.read_text())
    found = [rule for group in doc["groups"] for rule in group["rules"]]
    assert found
    return found


async def test_every_metric_queried_exists_and_every_duewise_metric_has_a_panel() -> None:
    duewise = registered_duewise_names()
    http = await scraped_http_names()
    known = duewise | http | {"target_info"}
    panels = dashboard_exprs()
    alerts = [r["expr"] for r in rules()]
    for expr in panels + alerts:
        used = set(METRIC.findall(expr))
        assert used, f"no metric in {expr!r}"
        assert used <= known, f"{sorted(used - known)} in {expr!r} are not registered"
    on_dashboard = {name for expr in panels for name in METRIC.findall(expr)}
    # every duewise series (a histogram through its buckets or count) has a panel
    for name in sorted(duewise):
        family = re.sub(r"_(bucket|count|sum)$", "", name)
        assert any(n == name or n.startswith(family + "_") for n in on_dashboard), name
    assert "http_server_duration_milliseconds_bucket" in on_dashboard


def test_the_alerts_cover_the_runbooks_and_the_readme_has_them() -> None:
    found = rules()
    names = {r["alert"] for r in found}
    assert {
        "DuewiseConsumerLagHigh",
        "DuewiseOutboxAgeHigh",
        "DuewiseDltGrowing",
        "DuewiseSendFailures",
    } <= names
    readme = (ROOT / "README.md").read_text()
    anchors = {
        "runbook-" + re.sub(r"[^a-z0-9 -]", "", title.lower()).strip().replace(" ", "-")
        for title in re.findall(r"^#### Runbook: (.+)$", readme, re.MULTILINE)
    }
    for rule in found:
        assert rule["annotations"]["summary"]
        url = rule["annotations"]["runbook_url"]
        assert url.startswith("README.md#"), url
        assert url.split("#", 1)[1] in anchors, (url, anchors)
    used = {r["annotations"]["runbook_url"].split("#", 1)[1] for r in found}
    assert {"runbook-stuck-consumer", "runbook-growing-dlt", "runbook-broker-outage"} <= used
