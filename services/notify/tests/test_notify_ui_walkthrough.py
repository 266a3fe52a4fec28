"""The issue's "done when", in a real browser against the real services, on the demo book.

A new user who opens the UI of a stack seeded by the demo seeder (duewise_dev.seed, the code
behind `make run --demo`, at a small size) can, without reading code: find the riskiest
overdue customer (the first row of the worklist that owes something), see why it is risky
(the score's factors) and what will happen next (dunning's dry run), record its promise to
pay, and watch dunning pause — dunning's own pause of each promised invoice shows on the
page, the dry run marks its steps held until the promised date, and the worklist pushes the
customer down with "promise pending". Screenshots go to test-artifacts/ui/.

The services are the real invoice, dunning, risk and notify apps (see ui_kit); a task in the
fixture applies each service's outbox to its consumers while the seeder writes, as the
consumers of a running stack would.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from duewise_dev.seed import Urls, demo_password, plan_book, seed
from playwright.async_api import Browser, expect
from test_notify_ui_browser import Screens, browser, pngs, watch_errors
from ui_kit import ADMIN_TOKEN, UiStack, running_stack

__all__ = ["browser"]  # the fixture, imported for the test below

#: Small enough to seed in well under a minute, big enough for both collectors to have
#: overdue customers in several bands.
DEMO_CUSTOMERS, DEMO_INVOICES = 20, 160


@pytest.fixture(scope="session")
async def demo_stack(pg_server_url: str) -> AsyncIterator[UiStack]:
    """The four services, seeded by the demo seeder (users admin, carol and dave included)."""
    async with running_stack(pg_server_url, "demo") as stack:
        done = asyncio.Event()

        async def consume() -> None:
            while not done.is_set():
                await stack.feed_events()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(done.wait(), 0.3)

        consumer = asyncio.create_task(consume())
        try:
            await seed(
                urls=Urls(
                    invoice=stack.invoice.url,
                    dunning=stack.dunning.url,
                    risk=stack.risk.url,
                    notify=stack.notify.url,
                ),
                admin_token=ADMIN_TOKEN,
                book=plan_book(customers=DEMO_CUSTOMERS, invoices=DEMO_INVOICES),
                notify_db_url=stack.settings.database_url,
                wait_s=300,  # a loaded machine: the consumers may lag the writes
            )
        finally:
            done.set()
            await consumer
        await stack.feed_events()  # what the last writes caused
        yield stack


async def _riskiest_overdue(stack: UiStack, owner: str) -> dict[str, Any]:
    """What the worklist should put first for a collector looking for money owed: the first
    customer in working order with an overdue balance (risk's projection, read directly)."""
    async with httpx.AsyncClient(
        base_url=stack.risk.url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
    ) as risk:
        rows = (await risk.get("/v1/worklist", params={"owner": owner, "limit": 500})).json()
    owing = [r for r in rows["items"] if r["overdue"] > 0]
    assert owing, f"the demo book gave {owner} no overdue customer"
    first: dict[str, Any] = owing[0]
    assert not first["pushed_down"], "every overdue customer is disputed or promised"
    return first


@pytest.mark.timeout(600)
async def test_a_new_user_finds_the_riskiest_overdue_customer_and_records_its_promise(
    demo_stack: UiStack, browser: Browser, tmp_path: Path
) -> None:
    base = demo_stack.notify.url
    screens = Screens(tmp_path, start=20)  # numbered after the other browser tests' shots
    expected = await _riskiest_overdue(demo_stack, "carol")
    context = await browser.new_context(viewport={"width": 1280, "height": 900})
    page = await context.new_page()
    errors = watch_errors(page)

    # Open the URL: the sign-in page; sign in with the demo password `make run` prints.
    await page.goto(base + "/")
    await page.get_by_label("User name").fill("carol")
    await page.get_by_label("Password").fill(demo_password("carol"))
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_role("heading", name="Worklist")).to_be_visible()

    # The worklist: the first row owing money is the riskiest overdue customer.
    rows = page.locator("table.worklist tbody tr")
    await expect(rows.first).to_be_visible()
    overdue_cells = await rows.locator("td:nth-child(4)").all_inner_texts()
    first_owing = next(i for i, t in enumerate(overdue_cells) if any(ch in "123456789" for ch in t))
    row = rows.nth(first_owing)
    await expect(row).to_contain_text(expected["name"])
    await expect(row).to_contain_text(expected["band"])
    await screens.shoot(page, "demo-worklist")

    # One click to the customer: why it is risky, and what dunning will do next.
    await row.get_by_role("link", name=expected["name"]).click()
    await expect(page.get_by_role("heading", name=expected["name"])).to_be_visible()
    risk = page.locator("#risk")
    await expect(risk).to_contain_text("Why: the factors add up to the score")
    assert await risk.locator("table tr").count() >= 2, "no factor explains the score"
    dunning = page.locator("#dunning")
    await expect(dunning).to_contain_text("What fires next (dry run)")
    upcoming = dunning.locator("table tr")
    assert await upcoming.count() >= 2, "the dry run shows nothing to come"
    await expect(dunning.locator("tr.held")).to_have_count(0)
    await screens.shoot(page, "demo-customer")

    # Record the promise: every open invoice, the whole amount, in a week (the defaults).
    form = page.locator("#promise-form")
    promised = await form.get_by_label("Promised date").input_value()
    chosen = await form.locator("input[name=invoice_ids]:checked").count()
    assert chosen >= 1
    await form.get_by_role("button", name="Record promise").click()
    await expect(page.get_by_role("status")).to_contain_text("Promise to pay recorded")

    # Dunning paused: its own pauses (one per promised invoice, made with carol's token),
    # and the dry run holds the steps until the promised date.
    pauses = page.locator("#pause-form .pause", has_text="promise")
    await expect(pauses).to_have_count(chosen)
    await expect(pauses.first).to_contain_text("promise to pay")
    await expect(pauses.first).to_contain_text(f"by {promised}")
    await expect(pauses.first).to_contain_text("ui:carol")
    await expect(page.locator("#paused")).to_contain_text(f"until {promised} (promise to pay)")
    held = dunning.locator("tr.held")
    await expect(held.first).to_contain_text(f"held: promise to pay until {promised}")
    await expect(page.locator("#timeline")).to_contain_text(f"Promise to pay by {promised}")
    # What the customer said, logged as a response too: risk hears of the promise from it.
    await expect(page.locator("#timeline")).to_contain_text("Response: promise")
    await screens.shoot(page, "demo-promise-recorded")

    # Back on the worklist: marked "promise pending" and worked after the others.
    await page.get_by_role("navigation").get_by_role("link", name="Worklist").click()
    moved = page.locator("table.worklist tbody tr", has_text=expected["name"])
    await expect(moved).to_contain_text("promise pending")
    await expect(moved).to_have_class("down")
    classes = [await r.get_attribute("class") or "" for r in await rows.all()]
    assert classes == sorted(classes, key=lambda c: c == "down"), "not worked after the others"
    await screens.shoot(page, "demo-worklist-after-promise")
    await context.close()

    async with demo_stack.admin(demo_stack.dunning) as dun:
        listed = await dun.get(
            "/v1/pauses",
            params={"customer_id": expected["customer_id"], "active": "true", "limit": 200},
        )
    in_force = [p for p in listed.json()["items"] if p["kind"] == "promise"]
    assert len(in_force) == chosen
    assert {p["created_by"] for p in in_force} == {"ui:carol"}
    assert dt.date.fromisoformat(promised) > dt.datetime.now(dt.UTC).date()
    assert errors == []
    assert pngs(tmp_path) == [
        "21-demo-worklist.png",
        "22-demo-customer.png",
        "23-demo-promise-recorded.png",
        "24-demo-worklist-after-promise.png",
    ]
