"""The audit log: every state change recorded (who, request, before, after, when, trace id)
in the same transaction, UI actions included; readable by admins only; append-only even to
SQL; no route that changes it."""

from __future__ import annotations

import importlib.util
import secrets
from pathlib import Path
from typing import Any

import pytest
from access_kit import all_routes, client, csrf_of, mint, signed_in
from duewise_service.audit import MACHINERY_TABLES
from opentelemetry import trace
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from ui_kit import ADMIN_TOKEN, Served, UiStack

REPO = Path(__file__).resolve().parents[2]
MIGRATIONS = {
    "invoice": "services/invoice/src/invoice/migrations/versions/0003_audit_log.py",
    "dunning": "services/dunning/src/dunning/migrations/versions/0004_audit_log.py",
    "risk": "services/risk/src/risk/migrations/versions/0003_audit_log.py",
    "notify": "services/notify/src/notify/migrations/versions/0003_audit_log.py",
}


def services(stack: UiStack) -> dict[str, Served]:
    return {
        "invoice": stack.invoice,
        "dunning": stack.dunning,
        "risk": stack.risk,
        "notify": stack.notify,
    }


def _not_audited(service: str) -> set[str]:
    spec = importlib.util.spec_from_file_location(
        f"{service}_audit_rev", REPO / MIGRATIONS[service]
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return set(module.NOT_AUDITED)


async def _audit(served: Served, **filters: str) -> list[dict[str, Any]]:
    async with client(served) as c:
        r = await c.get("/v1/audit", params=filters)
    assert r.status_code == 200, r.text
    items: list[dict[str, Any]] = r.json()["items"]
    return items


async def test_an_api_change_is_recorded_with_actor_request_trace_and_before_after(
    ui_stack: UiStack,
) -> None:
    async with client(ui_stack.invoice) as admin:
        created = await admin.post(
            "/v1/customers",
            json={"name": "Audit Trail AG", "currency": "EUR", "country": "DE"},
            headers={"Idempotency-Key": secrets.token_hex(8)},
        )
        assert created.status_code == 201, created.text
        customer_id = created.json()["id"]
        # The caller's trace (the httpx instrumentation, when installed, injects the same).
        with trace.get_tracer(__name__).start_as_current_span("audit-test") as span:
            ctx = span.get_span_context()
            trace_id = f"{ctx.trace_id:032x}"
            changed = await admin.patch(
                f"/v1/customers/{customer_id}",
                json={"name": "Audit Trail GmbH"},
                headers={
                    "traceparent": f"00-{trace_id}-{ctx.span_id:016x}-00",
                    "Idempotency-Key": secrets.token_hex(8),
                },
            )
        assert changed.status_code == 200, changed.text

    rows = await _audit(ui_stack.invoice, entity="customer", entity_id=customer_id)
    insert = rows[-1]  # newest first
    assert insert["action"] == "insert"
    # The PATCH's rows (the service may flush the name and its updated_at separately).
    patch_rows = [r for r in rows if r["trace_id"] == trace_id]
    assert patch_rows
    assert {r["action"] for r in patch_rows} == {"update"}
    (update,) = [r for r in patch_rows if "name" in r["after"]]
    assert update["before"]["name"] == "Audit Trail AG"
    assert update["after"]["name"] == "Audit Trail GmbH"
    assert "currency" not in update["after"]  # only what changed
    assert update["trace_id"] == trace_id
    assert update["actor"] == "DUEWISE_ADMIN_TOKEN"
    assert update["actor_role"] == "admin"
    assert update["actor_token_id"] == "tok_env_admin"
    assert update["request"] == f"PATCH /v1/customers/{customer_id}"
    assert insert["before"] is None
    assert insert["after"]["name"] == "Audit Trail AG"
    assert update["at"] >= insert["at"]
    by_trace = await _audit(ui_stack.invoice, trace_id=trace_id)
    assert {r["id"] for r in by_trace} == {r["id"] for r in patch_rows}


async def test_secrets_never_reach_the_log(ui_stack: UiStack) -> None:
    await mint(ui_stack.dunning, role="service")
    rows = await _audit(ui_stack.dunning, entity="api_token", action="insert")
    assert rows
    for row in rows:
        assert "token_hash" not in row["after"]


async def test_a_ui_action_is_recorded_under_the_user_in_notify_and_in_the_owning_service(
    ui_stack: UiStack,
) -> None:
    acme = ui_stack.customers["acme"]["id"]
    invoice_id = ui_stack.invoices["acme-overdue"]["id"]
    async with signed_in(ui_stack.notify, "carol") as carol:
        page = await carol.get(f"/customers/{acme}")
        r = await carol.post(
            f"/customers/{acme}/disputes",
            data={
                "csrf_token": csrf_of(page.text),
                "invoice_id": invoice_id,
                "reason": "audit: wrong quantity",
            },
        )
        assert r.status_code == 303, r.text

    ui_rows = await _audit(ui_stack.notify, entity="ui_action", actor="ui:carol")
    assert ui_rows, "the UI action is not in notify's audit log"
    assert ui_rows[0]["after"]["kind"] == "dispute_open"
    assert ui_rows[0]["after"]["user_name"] == "carol"
    assert ui_rows[0]["request"] == f"POST /customers/{acme}/disputes"

    disputes = await _audit(ui_stack.invoice, entity="dispute", actor="ui:carol")
    assert any(d["after"]["reason"] == "audit: wrong quantity" for d in disputes)
    assert disputes[0]["actor_role"] == "collector"


@pytest.mark.parametrize(
    "statement", ["UPDATE {t} SET actor = 'x'", "DELETE FROM {t}", "TRUNCATE {t}"]
)
async def test_sql_cannot_rewrite_the_log(ui_stack: UiStack, statement: str) -> None:
    for name, served in services(ui_stack).items():
        async with served.engine.connect() as conn:
            await conn.execute(
                text(
                    "INSERT INTO audit.audit_log (actor, action, entity) "
                    "VALUES ('test', 'insert', 'probe')"
                )
            )
            await conn.commit()
            with pytest.raises(DBAPIError, match="append-only"):
                await conn.execute(text(statement.format(t="audit.audit_log")))
            await conn.rollback()
            count = await conn.scalar(text("SELECT count(*) FROM audit.audit_log"))
            assert count, name


async def test_every_table_but_the_machinery_and_projections_is_audited(
    ui_stack: UiStack,
) -> None:
    for name, served in services(ui_stack).items():
        async with served.engine.connect() as conn:
            tables = set(
                (
                    await conn.execute(
                        text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
                    )
                ).scalars()
            )
            audited = set(
                (
                    await conn.execute(
                        text(
                            "SELECT c.relname FROM pg_trigger t JOIN pg_class c "
                            "ON c.oid = t.tgrelid WHERE t.tgname = c.relname || '_audit'"
                        )
                    )
                ).scalars()
            )
        assert not audited & set(MACHINERY_TABLES), name
        missing = tables - audited - _not_audited(name)
        assert not missing, f"{name}: tables without the audit trigger: {sorted(missing)}"


async def test_no_route_writes_to_the_log(ui_stack: UiStack) -> None:
    for name, served in services(ui_stack).items():
        routes = [r for r in all_routes(served.app) if "audit" in r.path]
        assert [(r.method, r.path) for r in routes] == [("GET", "/v1/audit")], name


async def test_only_admins_read_the_log(ui_stack: UiStack) -> None:
    for name, served in services(ui_stack).items():
        for role in ("collector", "service"):
            token = await mint(served, role=role)
            async with client(served, token) as c:
                r = await c.get("/v1/audit")
            assert r.status_code == 403, f"{name} {role}: {r.status_code}"
            assert r.headers["content-type"].startswith("application/problem+json")
        async with client(served, ADMIN_TOKEN) as c:
            assert (await c.get("/v1/audit", params={"limit": 1})).status_code == 200


async def test_the_log_pages_newest_first_and_filters_by_time(ui_stack: UiStack) -> None:
    async with client(ui_stack.invoice) as admin:
        first = (await admin.get("/v1/audit", params={"limit": 2})).json()
        assert len(first["items"]) == 2
        assert first["items"][0]["id"] > first["items"][1]["id"]
        assert first["next_cursor"]
        second = (
            await admin.get("/v1/audit", params={"limit": 2, "cursor": first["next_cursor"]})
        ).json()
        assert second["items"][0]["id"] < first["items"][1]["id"]
        newest = first["items"][0]["at"]
        later = (await admin.get("/v1/audit", params={"since": newest})).json()["items"]
        assert later
        assert all(r["at"] >= newest for r in later)
        naive = await admin.get("/v1/audit", params={"since": "2026-01-01T00:00:00"})
        assert naive.status_code == 422  # an instant needs its offset
        assert naive.headers["content-type"].startswith("application/problem+json")
