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


async def _users_invoice_token(stack: UiStack, user: str, service: str = "invoice") -> str:
    """The token for `service` the UI holds for `user` (sealed at rest; unsealed here)."""
    from notify.ui.sealing import unseal

    async with stack.notify.engine.connect() as conn:
        sealed = await conn.scalar(
            text("SELECT api_tokens ->> :s FROM ui_user WHERE user_name = :u"),
            {"s": service, "u": user},
        )
    assert sealed
    return unseal(stack.settings.secret_key.get_secret_value(), sealed)


async def test_a_collectors_api_token_is_bound_to_their_portfolio(ui_stack: UiStack) -> None:
    acme, bobco = ui_stack.customers["acme"]["id"], ui_stack.customers["bobco"]["id"]
    bob_invoice = ui_stack.invoices["bobco-1"]["id"]
    token = await _users_invoice_token(ui_stack, "carol")
    async with client(ui_stack.invoice, token) as carol:
        me = (await carol.get("/v1/tokens/me")).json()
        assert (me["role"], me["subject"]) == ("collector", "carol")
        # Her own customer, fully.
        for path in (f"/v1/customers/{acme}", f"/v1/customers/{acme}/balance"):
            assert (await carol.get(path)).status_code == 200, path
        mine = await carol.get("/v1/invoices", params={"customer_id": acme})
        assert mine.status_code == 200
        owned = await carol.get("/v1/customers", params={"owner": "carol"})
        assert [c["id"] for c in owned.json()["items"]] == [acme]
        # Bob's, by id or by guessing: the same 404 as for nothing at all.
        for path, params in (
            (f"/v1/customers/{bobco}", {}),
            (f"/v1/customers/{bobco}/balance", {}),
            (f"/v1/customers/{bobco}/aging", {}),
            (f"/v1/invoices/{bob_invoice}", {}),
            ("/v1/invoices", {"customer_id": bobco}),
            ("/v1/payments", {"customer_id": bobco}),
            ("/v1/disputes", {"customer_id": bobco}),
        ):
            r = await carol.get(path, params=params)
            assert r.status_code == 404, f"{path} {params}: {r.status_code}"
            assert r.headers["content-type"].startswith("application/problem+json")
        # Lists wider than her portfolio, and portfolio-wide reports.
        for path, params in (
            ("/v1/customers", {}),
            ("/v1/customers", {"owner": "bob"}),
            ("/v1/invoices", {}),
            ("/v1/payments", {}),
            ("/v1/disputes", {}),
            ("/v1/reports/aging", {}),
        ):
            r = await carol.get(path, params=params)
            assert r.status_code == 403, f"{path} {params}: {r.status_code}"
        # Acting on Bob's invoice.
        r = await carol.post(
            f"/v1/invoices/{bob_invoice}/disputes",
            json={"reason": "guessed"},
            headers={"Idempotency-Key": secrets.token_hex(8)},
        )
        assert r.status_code == 404
    async with ui_stack.invoice.engine.connect() as conn:
        n = await conn.scalar(
            text("SELECT count(*) FROM dispute WHERE invoice_id = :i AND reason = 'guessed'"),
            {"i": bob_invoice},
        )
    assert n == 0


async def test_a_collectors_risk_token_reads_only_their_portfolio(ui_stack: UiStack) -> None:
    acme, bobco = ui_stack.customers["acme"]["id"], ui_stack.customers["bobco"]["id"]
    token = await _users_invoice_token(ui_stack, "carol", "risk")
    async with client(ui_stack.risk, token) as carol:
        assert (await carol.get("/v1/tokens/me")).json()["subject"] == "carol"
        assert (await carol.get(f"/v1/customers/{acme}/signals")).status_code == 200
        for part in ("profile", "score", "signals"):
            r = await carol.get(f"/v1/customers/{bobco}/{part}")
            assert r.status_code == 404, f"{part}: {r.status_code}"
        for path in ("/v1/signals", "/v1/scores"):
            assert (await carol.get(path)).status_code == 403, path
        rows = (await carol.get("/v1/worklist")).json()["items"]
        assert {r["customer_id"] for r in rows} == {acme}


async def test_a_collectors_dunning_token_acts_only_on_their_portfolio(ui_stack: UiStack) -> None:
    acme, bobco = ui_stack.customers["acme"]["id"], ui_stack.customers["bobco"]["id"]
    bob_invoice = ui_stack.invoices["bobco-1"]["id"]
    token = await _users_invoice_token(ui_stack, "carol", "dunning")
    async with client(ui_stack.dunning, token) as carol:
        assert (await carol.get("/v1/tokens/me")).json()["subject"] == "carol"
        # Her own customer: read and act.
        for path in (f"/v1/customers/{acme}/overview", f"/v1/customers/{acme}/timeline"):
            assert (await carol.get(path)).status_code == 200, path
        r = await carol.get("/v1/stages", params={"customer_id": acme})
        assert r.status_code == 200, r.text
        # Bob's, by id, by his invoice, or tucked in among her own: the same 404 as for nothing.
        for path, params in (
            (f"/v1/customers/{bobco}/overview", {}),
            (f"/v1/customers/{bobco}/timeline", {}),
            (f"/v1/customers/{bobco}/stage", {}),
            (f"/v1/invoices/{bob_invoice}/timeline", {}),
            ("/v1/stages", {"customer_id": [acme, bobco]}),
            ("/v1/promises", {"customer_id": bobco}),
            ("/v1/pauses", {"customer_id": bobco}),
        ):
            r = await carol.get(path, params=params)
            assert r.status_code == 404, f"{path} {params}: {r.status_code}"
            assert r.headers["content-type"].startswith("application/problem+json")
        # Lists wider than her portfolio.
        for path in ("/v1/promises", "/v1/pauses", "/v1/stages"):
            assert (await carol.get(path)).status_code == 403, path
        # Acting on Bob's customer or invoice writes nothing.
        writes = (
            ("/v1/pauses", {"invoice_id": bob_invoice, "reason": "guessed"}),
            ("/v1/pauses", {"customer_id": bobco, "reason": "guessed"}),
            (
                "/v1/promises",
                {
                    "customer_id": acme,  # her customer, his invoice
                    "invoice_ids": [bob_invoice],
                    "amount": 100,
                    "promised_date": "2030-01-01",
                },
            ),
            (f"/v1/customers/{bobco}/credit-hold", {"reason": "guessed"}),
        )
        for path, body in writes:
            r = await carol.post(path, json=body, headers={"Idempotency-Key": secrets.token_hex(8)})
            assert r.status_code == 404, f"{path} {body}: {r.status_code} {r.text}"
    async with ui_stack.dunning.engine.connect() as conn:
        for table in ("pause", "promise"):
            n = await conn.scalar(
                text(f"SELECT count(*) FROM {table} WHERE customer_id = :c"), {"c": bobco}
            )
            assert n == 0, table
        held = await conn.scalar(
            text("SELECT count(*) FROM customer_stage WHERE customer_id = :c AND on_hold"),
            {"c": bobco},
        )
    assert held == 0
