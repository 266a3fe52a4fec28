"""Every API serves `GET /metrics` on its own port: no token needed, Prometheus text, not in
the OpenAPI document, and not traced (its requests make no server span)."""

from __future__ import annotations

import importlib
import secrets

import httpx
import pytest
from obs_stack import span_exporter
from opentelemetry.trace import SpanKind


@pytest.mark.parametrize("service", ["invoice", "dunning", "risk", "notify"])
async def test_every_api_serves_metrics_without_auth_and_untraced(service: str) -> None:
    exporter = span_exporter()
    config = importlib.import_module(f"{service}.config")
    main = importlib.import_module(f"{service}.main")
    app = main.create_app(config.Settings(database_url="postgresql://postgres@127.0.0.1:1/unused"))
    sampled = f"00-{secrets.token_hex(16)}-{secrets.token_hex(8)}-01"
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url=f"http://{service}.test"
    ) as client:
        r = await client.get("/metrics", headers={"traceparent": sampled})
        assert r.status_code == 200, r.text
        assert r.headers["content-type"].startswith("text/plain")
        assert "# TYPE process_cpu_seconds_total counter" in r.text
        openapi = await client.get("/openapi.json", headers={"traceparent": sampled})
        assert "/metrics" not in openapi.text
    trace_id = int(sampled.split("-")[1], 16)
    served = [
        s.name
        for s in exporter.get_finished_spans()
        if s.context.trace_id == trace_id and s.kind == SpanKind.SERVER
    ]
    assert served == ["GET /openapi.json"]  # traced, as every route is; the scrape is not
