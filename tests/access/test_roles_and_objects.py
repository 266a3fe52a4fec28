"""Roles and objects: a collector cannot edit policies, a read-only service token cannot
create payments, and a collector cannot read or act on another portfolio's customer."""

from __future__ import annotations

import secrets

from access_kit import client, csrf_of, mint, signed_in
from sqlalchemy import text
from ui_kit import UiStack


async def test_a_collector_cannot_edit_policies_through_the_api_or_the_ui(
    ui_stack: UiStack,
) -> None:
    token = await mint(ui_stack.dunning, role="collector")
    async with client(ui_stack.dunning, token) as c:
        assert (await c.get("/v1/policies")).status_code == 200  # reading them is fine
        for method, path in (
            ("POST", "/v1/policies"),
            ("PUT", "/v1/policies/pol_0000000000000000"),
            ("DELETE", "/v1/policies/pol_0000000000000000"),
        ):
            r = await c.request(method, path, json={}, headers={"Idempotency-Key": "k1"})
            assert r.status_code == 403, f"{method} {path}: {r.status_code}"
            assert "policies:write" in r.json()["detail"]
    async with signed_in(ui_stack.notify, "carol") as carol:
        page = await carol.get("/")
        r = await carol.post(
            "/policies/pol_0000000000000000", data={"csrf_token": csrf_of(page.text)}
        )
        assert r.status_code == 403
        assert "Only an admin" in r.text


async def test_risks_read_only_token_cannot_create_payments(ui_stack: UiStack) -> None:
    # What risk would hold for the invoice API: the service role narrowed to reading.
    token = await mint(ui_stack.invoice, role="service", scopes=["ar:read"])
    acme = ui_stack.customers["acme"]["id"]
    async with client(ui_stack.invoice, token) as risk:
        assert (await risk.get(f"/v1/customers/{acme}")).status_code == 200
        r = await risk.post(
            "/v1/payments",
            json={"customer_id": acme, "amount": 100, "currency": "USD", "method": "ach"},
            headers={"Idempotency-Key": secrets.token_hex(8)},
        )
    assert r.status_code == 403
    assert "payments:write" in r.json()["detail"]
    async with ui_stack.invoice.engine.connect() as conn:
        n = await conn.scalar(
            text("SELECT count(*) FROM payment WHERE customer_id = :c AND amount = 100"),
            {"c": acme},
        )
    assert n == 0


async def test_a_collector_cannot_read_or_act_on_another_portfolios_customer_in_the_ui(
    ui_stack: UiStack,
) -> None:
    bobco = ui_stack.customers["bobco"]["id"]
    guessed = "cus_" + secrets.token_hex(16)
    async with ui_stack.notify.engine.connect() as conn:
        before = await conn.scalar(text("SELECT count(*) FROM ui_action"))
    async with signed_in(ui_stack.notify, "carol") as carol:
        home = await carol.get("/")
        assert "Bobco" not in home.text
        csrf = csrf_of(home.text)
        for customer in (bobco, guessed):
            page = await carol.get(f"/customers/{customer}")
            assert page.status_code == 404
            assert "no such customer in your portfolio" in page.text
            assert "Bobco" not in page.text
            for action, data in (
                ("responses", {"reason": "will_pay", "note": "x"}),
                ("promises", {"amount": "100", "promised_date": "2030-01-01"}),
                ("disputes", {"invoice_id": ui_stack.invoices["bobco-1"]["id"], "reason": "x"}),
                ("pauses", {"reason": "x", "until": "2030-01-01"}),
                ("credit-hold", {}),
            ):
                r = await carol.post(
                    f"/customers/{customer}/{action}", data={"csrf_token": csrf, **data}
                )
                assert r.status_code == 404, f"{action} on {customer}: {r.status_code}"
    async with ui_stack.notify.engine.connect() as conn:
        after = await conn.scalar(text("SELECT count(*) FROM ui_action"))
    assert after == before  # nothing was sent to any service on carol's behalf
    # Bob, whose customer it is, sees it.
    async with signed_in(ui_stack.notify, "bob") as bob:
        assert (await bob.get(f"/customers/{bobco}")).status_code == 200
