"""The customer page when a service behind it is saturated (issue #8): the invoice or dunning
service accepts the UI's connections and never answers, or answers 5xx. The page still comes,
within the UI's per-call budget, with every other section and one sentence in place of each
missing one; forms that need the missing service are disabled and say why; logging a
response still works. The real services run under uvicorn (see ui_kit); the silent one is a
real listening socket that never writes."""

from __future__ import annotations

import datetime as dt
import html
import re
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI
from fastapi.responses import JSONResponse
from sqlalchemy import text
from test_notify_ui import csrf_of, sign_in
from ui_kit import UiStack, frozen_service, running_stack, serve, stop, ui_against, ui_stack

__all__ = ["ui_stack"]  # the fixture, imported for the tests below

#: Slack over the budget for the page's own work on a machine shared with other test runs.
SLACK_S = 2.0


def _buttons(page: str) -> dict[str, bool]:
    """Each submit button's label and whether it is disabled."""
    return {
        label.strip(): "disabled" in attrs
        for attrs, label in re.findall(r'<button type="submit"([^>]*)>([^<]+)</button>', page)
    }


@asynccontextmanager
async def carol_against(stack: UiStack, **urls: str) -> AsyncIterator[httpx.AsyncClient]:
    """Carol signed in to a UI whose services are at `urls` (see ui_against)."""
    async with ui_against(stack, **urls) as c:
        assert (await sign_in(c, "carol")).status_code == 303
        yield c


async def acme_page(stack: UiStack, c: httpx.AsyncClient) -> tuple[str, float, str]:
    """Carol's customer page as text (entities unescaped), how long it took, and its HTML; it
    must be a 200."""
    started = time.perf_counter()
    r = await c.get(f"/customers/{stack.customers['acme']['id']}")
    took = time.perf_counter() - started
    assert r.status_code == 200, r.text
    return html.unescape(r.text), took, r.text


@asynccontextmanager
async def failing_service(status: int) -> AsyncIterator[str]:
    """The URL of a service that answers every request with `status` and a problem document."""
    app = FastAPI()

    @app.api_route("/{path:path}", methods=["GET", "POST", "PUT", "DELETE"])
    async def fail(path: str) -> JSONResponse:
        return JSONResponse(
            {"title": "Service Unavailable", "status": status},
            status_code=status,
            media_type="application/problem+json",
        )

    served = await serve(app)
    try:
        yield served.url
    finally:
        await stop(served)


async def test_a_silent_invoice_service_leaves_the_rest_of_the_page_within_the_budget(
    ui_stack: UiStack,
) -> None:
    acme = ui_stack.customers["acme"]["id"]
    budget = ui_stack.ui.page_call_budget_s
    assert budget == 2.0  # the default, which the sentences below name
    async with frozen_service() as silent, carol_against(ui_stack, invoice=silent) as c:
        page, took, raw = await acme_page(ui_stack, c)
        # One budget for the invoice service's part, not the 5 s client timeout per call.
        assert budget <= took < budget + SLACK_S, took
        for section in ("Invoices", "Payments", "Disputes", "The balance and aging"):
            assert (
                f"{section} could not be loaded: the invoice service did not answer within 2 s. "
                "Reload to try again."
            ) in page
        # Who the customer is and whom to call come from notify's own copy, and say so.
        assert "Acme Tools GmbH" in page
        assert "Customer details are notify's copy from " in page
        assert "ap@acme.example" in page
        # Risk, dunning and notify answered: their sections are there.
        assert re.search(r"score <strong>\d+</strong> / 100", page)
        assert "Stage: <strong>" in page
        assert "<th>Step</th>" in page  # what fires next
        # Its invoices are named by notify's copy of their numbers, not by ids.
        assert "A-1001" in page
        assert "inv_" not in page
        assert "could not be loaded: the dunning service" not in page
        assert "could not be loaded: the risk service" not in page
        # Forms that act with the invoice service are there but disabled, with the reason;
        # those that need only dunning or notify are not.
        buttons = _buttons(page)
        assert buttons["Record promise"] is True
        assert buttons["Open dispute"] is True
        assert buttons["Save contacts"] is True
        assert buttons["Log response"] is False
        assert buttons["Pause dunning"] is False
        assert buttons["Preview"] is False
        assert (
            "Not available right now: the invoice service did not answer within 2 s. "
            "Reload to try again."
        ) in page
        # No figure is made up: the message's amounts are left for the collector to fill.
        assert "[open amount]" in page
        assert "$0.00" not in page

        # The collector on the phone logs what the customer said, invoice service or not.
        started = time.perf_counter()
        logged = await c.post(
            f"/customers/{acme}/responses",
            data={
                "csrf_token": csrf_of(raw),
                "reason": "forgot",
                "note": "logged while the invoice service was saturated",
            },
        )
        assert logged.status_code == 303, logged.text
        assert time.perf_counter() - started < budget + SLACK_S
    async with ui_stack.notify.engine.connect() as conn:
        by = await conn.scalar(
            text(
                "SELECT logged_by FROM customer_response WHERE customer_id = :c "
                "AND note = 'logged while the invoice service was saturated'"
            ),
            {"c": acme},
        )
    assert by == "ui:carol"


async def test_without_the_invoice_service_only_customers_notify_knows_as_yours_show(
    ui_stack: UiStack,
) -> None:
    bobco = ui_stack.customers["bobco"]["id"]
    async with frozen_service() as silent, carol_against(ui_stack, invoice=silent) as c:
        # Bob's customer stays Bob's: notify's copy names its owner.
        other = await c.get(f"/customers/{bobco}")
        assert other.status_code == 404
        assert "There is no such customer in your portfolio." in other.text
        assert "Bobco" not in other.text
        refused = await c.post(
            f"/customers/{bobco}/responses",
            data={"csrf_token": csrf_of(other.text), "reason": "forgot", "note": "not mine"},
        )
        assert refused.status_code == 404
        # A customer notify has not heard of cannot be identified: the error page, as before.
        unknown = await c.get("/customers/cus_notknownanywhere")
        assert unknown.status_code == 502
        assert "The invoice service did not answer within 2 s; try again." in unknown.text


async def test_an_invoice_service_answering_5xx_is_a_sentence_in_place_of_its_sections(
    ui_stack: UiStack,
) -> None:
    async with failing_service(503) as failing, carol_against(ui_stack, invoice=failing) as c:
        page, _, _ = await acme_page(ui_stack, c)
        assert (
            "Invoices could not be loaded: the invoice service had a problem (HTTP 503). "
            "Reload to try again."
        ) in page
        assert "Acme Tools GmbH" in page
        assert re.search(r"score <strong>\d+</strong> / 100", page)


async def test_silent_invoice_and_dunning_services_cost_the_page_one_budget_not_two(
    ui_stack: UiStack,
) -> None:
    budget = ui_stack.ui.page_call_budget_s
    async with (
        frozen_service() as silent,
        carol_against(ui_stack, invoice=silent, dunning=silent) as c,
    ):
        page, took, _ = await acme_page(ui_stack, c)
        assert budget <= took < budget + SLACK_S, took  # the two waited at the same time
        for section in ("The dunning stage", "What fires next", "Pauses"):
            assert (
                f"{section} could not be loaded: the dunning service did not answer within 2 s. "
                "Reload to try again."
            ) in page
        assert "Invoices could not be loaded: the invoice service did not answer" in page
        # Nothing is claimed that dunning did not say.
        assert "Not on credit hold." not in page
        assert "Nothing scheduled." not in page
        assert "not in dunning" not in page.lower()
        buttons = _buttons(page)
        assert buttons["Pause dunning"] is True
        assert buttons["Place credit hold"] is True
        assert buttons["Log response"] is False
        assert re.search(r"score <strong>\d+</strong> / 100", page)
        # The worklist is risk's; dunning only freshens its rows, within the same budget.
        started = time.perf_counter()
        worklist = await c.get("/")
        assert worklist.status_code == 200
        assert time.perf_counter() - started < budget + SLACK_S
        assert "The dunning service did not answer within 2 s; try again." in worklist.text
        assert "Acme Tools GmbH" in worklist.text


async def test_a_silent_dunning_service_leaves_the_invoices_and_disables_its_forms(
    ui_stack: UiStack,
) -> None:
    budget = ui_stack.ui.page_call_budget_s
    async with frozen_service() as silent, carol_against(ui_stack, dunning=silent) as c:
        page, took, _ = await acme_page(ui_stack, c)
        assert budget <= took < budget + SLACK_S, took
        assert "The dunning stage could not be loaded: the dunning service did not answer" in page
        assert "A-1001" in page
        assert "A-1002" in page
        assert "could not be loaded: the invoice service" not in page
        assert "notify's copy" not in page  # the invoice service named the customer
        buttons = _buttons(page)
        assert buttons["Record promise"] is True  # dunning records promises
        assert buttons["Open dispute"] is False  # the invoice service opens disputes
        assert buttons["Save contacts"] is False
        assert buttons["Log response"] is False


async def test_a_customer_with_more_invoices_than_an_overview_holds_shows_them_all(
    pg_server_url: str,
) -> None:
    """The rest of a long list is read after the overview (each page within the budget): a
    customer with 205 invoices, 200 in the overview, shows all 205."""
    async with running_stack(pg_server_url, "ui_long") as stack:
        async with stack.admin(stack.invoice) as inv:
            r = await inv.post(
                "/v1/customers",
                json={"name": "Longlist Inc", "currency": "USD", "country": "US", "owner": "carol"},
                headers={"Idempotency-Key": "long-customer"},
            )
            assert r.status_code == 201, r.text
            customer = r.json()["id"]
            today = dt.datetime.now(dt.UTC).date()
            for n in range(1, 206):
                r = await inv.post(
                    "/v1/invoices",
                    json={
                        "customer_id": customer,
                        "number": f"L-{n:04d}",
                        "issue_date": today.isoformat(),
                        "due_date": (today + dt.timedelta(days=30)).isoformat(),
                        "currency": "USD",
                        "total": 100_00,
                    },
                    headers={"Idempotency-Key": f"long-{n}"},
                )
                assert r.status_code == 201, r.text
        await stack.create_user("carol")
        async with ui_against(stack) as c:
            assert (await sign_in(c, "carol")).status_code == 303
            r = await c.get(f"/customers/{customer}")
        assert r.status_code == 200, r.text
        assert "could not be loaded" not in r.text
        assert set(re.findall(r"Invoice (L-\d{4}) issued", r.text)) == {
            f"L-{n:04d}" for n in range(1, 206)
        }
