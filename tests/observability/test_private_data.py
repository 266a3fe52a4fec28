"""No e-mail addresses, phone numbers or tokens in logs or span attributes.

A flow through the real services (under uvicorn, as the collector UI's tests run them) that
handles exactly such values: customers with contacts' e-mail addresses and phone numbers,
a contact update, API token creation and use, collector accounts (which mint tokens at the
other services), a UI sign-in with its CSRF and session tokens. Every log line the process
writes and every recorded span's attributes and events are then searched for the values
used, and for anything shaped like an e-mail address: none is found. Logs are JSON, and a
line written inside a span carries its trace and span ids."""

from __future__ import annotations

import io
import json
import logging
import re
import secrets
import sys
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
import structlog
from duewise_service.logs import configure_logging
from duewise_service.redact import EMAIL, redact_text
from obs_stack import span_exporter
from opentelemetry import trace
from opentelemetry.context import Context

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "services" / "notify" / "tests"))
from ui_kit import ADMIN_TOKEN, PASSWORD, running_stack

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def test_the_safety_net_redacts_addresses_numbers_and_tokens() -> None:
    text = (
        "to dana.debtor@privacy.example and +1 415 555 0142 / (415) 555-0199 with "
        "Bearer dw_AbCdEfGhIjKlMnOpQrStUvWxYz0123456789abcdefg, session "
        + secrets.token_urlsafe(32)
        + " on 2026-12-02 10:15:00, invoice A-1001 of 1250000 cents, msg_"
        + secrets.token_hex(16)
    )
    clean = redact_text(text)
    assert "@" not in clean
    assert "555" not in clean
    assert "dw_" not in clean
    assert clean.count("[token]") == 2
    assert "2026-12-02 10:15:00" in clean
    assert "A-1001 of 1250000 cents" in clean
    assert "msg_" in clean  # ids stay: they are how a log line is followed up


def _sampled_context() -> Context:
    return trace.set_span_in_context(
        trace.NonRecordingSpan(
            trace.SpanContext(
                int(secrets.token_hex(16), 16),
                int(secrets.token_hex(8), 16),
                is_remote=True,
                trace_flags=trace.TraceFlags(trace.TraceFlags.SAMPLED),
            )
        )
    )


async def test_no_personal_data_or_tokens_in_logs_or_spans(pg_server_url: str) -> None:
    exporter = span_exporter()
    tag = secrets.token_hex(3)
    email, new_email = f"dana.{tag}@privacy.example", f"dana.new.{tag}@privacy.example"
    phone, new_phone = "+14155550142", "+14155550199"
    secrets_seen: list[str] = [email, new_email, phone, new_phone, PASSWORD, ADMIN_TOKEN]
    captured = io.StringIO()
    tracer = trace.get_tracer("test")
    async with running_stack(pg_server_url, f"obs{tag}") as stack:
        # after the apps' own setup: every log line of this process from here on is captured
        configure_logging("duewise-test", stream=captured, level="DEBUG")
        try:
            with tracer.start_as_current_span("privacy flow", context=_sampled_context()):
                structlog.get_logger("test").info("flow.started", customer_contact="[none yet]")
                async with stack.admin(stack.invoice) as inv:
                    r = await inv.post(
                        "/v1/customers",
                        json={
                            "name": f"Privacy {tag}",
                            "currency": "USD",
                            "country": "US",
                            "timezone": "America/New_York",
                            "contacts": [
                                {"name": "Dana", "email": email, "phone": phone, "role": "billing"}
                            ],
                        },
                    )
                    assert r.status_code == 201, r.text
                    customer = r.json()["id"]
                    r = await inv.patch(
                        f"/v1/customers/{customer}",
                        json={
                            "contacts": [{"name": "Dana", "email": new_email, "phone": new_phone}]
                        },
                    )
                    assert r.status_code == 200, r.text
                    # a search by address: the query string stays out of the spans
                    await inv.get("/v1/customers", params={"q": new_email})
                    r = await inv.post("/v1/tokens", json={"name": f"erp {tag}", "role": "service"})
                    assert r.status_code == 201, r.text
                    api_token = r.json()["token"]
                    secrets_seen.append(api_token)
                    me = await inv.get(
                        "/v1/tokens/me", headers={"Authorization": f"Bearer {api_token}"}
                    )
                    assert me.status_code == 200, me.text
                    # a wrong token is refused (and logged, if at all, without itself)
                    wrong = "dw_" + secrets.token_urlsafe(32)
                    secrets_seen.append(wrong)
                    refused = await inv.get(
                        "/v1/tokens/me", headers={"Authorization": f"Bearer {wrong}"}
                    )
                    assert refused.status_code == 401
                # a collector account: the notify service mints its tokens at the others
                await stack.create_user(f"dana{tag}", "collector")
                async with httpx.AsyncClient(base_url=stack.notify.url, timeout=20) as ui:
                    form = await ui.get("/login")
                    match = CSRF.search(form.text)
                    assert match
                    secrets_seen.append(match.group(1))
                    r = await ui.post(
                        "/login",
                        data={
                            "user_name": f"dana{tag}",
                            "password": PASSWORD,
                            "csrf_token": match.group(1),
                        },
                    )
                    assert r.status_code == 303, r.text
                    secrets_seen.extend(v for v in ui.cookies.values() if len(v) >= 16)
                    assert (await ui.get("/")).status_code == 200
                # the safety net: a careless line with an address in it
                logging.getLogger("careless").warning("mailing %s at %s", new_email, new_phone)
        finally:
            configure_logging("duewise-test")  # back to stderr
    output = captured.getvalue()
    lines = [json.loads(line) for line in output.splitlines() if line.strip()]
    assert len(lines) >= 3, output
    (careless,) = [line for line in lines if line.get("logger") == "careless"]
    assert careless["event"] == "mailing [email] at [phone]"
    flow = [line for line in lines if line.get("event") == "flow.started"]
    assert flow
    assert len(flow[0]["trace_id"]) == 32
    assert len(flow[0]["span_id"]) == 16

    spans = exporter.get_finished_spans()
    assert any(s.name.startswith("POST") for s in spans)
    recorded = [
        json.dumps(
            {
                "name": s.name,
                "attributes": dict(s.attributes or {}),
                "events": [dict(e.attributes or {}) for e in s.events],
            },
            default=str,
        )
        for s in spans
    ]
    everything = output + "\n".join(recorded)
    for value in [*secrets_seen, *(quote(v, safe="") for v in secrets_seen)]:
        assert value not in everything, f"{value[:6]}… leaked: " + _context(everything, value)
    for digits in (phone[2:], new_phone[2:]):
        assert digits not in everything, _context(everything, digits)
    assert not EMAIL.search(everything), _context(everything, EMAIL.search(everything).group(0))  # type: ignore[union-attr]


def _context(text: str, value: str) -> str:
    at = text.find(value)
    return text[max(0, at - 300) : at + 300]
