"""The collector UI in a real browser: Playwright drives Debian's Chromium (headless) against
the notify app under uvicorn, with the real invoice, dunning and risk services beside it.

Carol signs in, sees her customer and not Bob's, opens it, records a promise to pay, and the
page shows the promise and dunning's pause; dunning's own database holds the pause. Each
screen is saved as a PNG in the test's tmp dir and copied to test-artifacts/ui/.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, async_playwright, expect
from sqlalchemy import text
from ui_kit import ARTIFACTS, PASSWORD, UiStack, catch_mail, ui_stack

__all__ = ["ui_stack"]  # the fixture, imported for the test below

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def require_chromium() -> None:
    """Fail (never skip) without Debian's Chromium: `make test` installs it."""
    if not (CHROMIUM.exists() and os.access(CHROMIUM, os.X_OK)):
        pytest.fail(
            f"{CHROMIUM} is missing: the browser tests need Debian's Chromium "
            "(sudo apt-get install -y chromium)",
            pytrace=False,
        )


def pngs(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.glob("*.png"))


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    require_chromium()
    async with async_playwright() as p:
        b = await p.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )
        try:
            yield b
        finally:
            await b.close()


class Screens:
    """Full-page screenshots, numbered, kept in the tmp dir and copied to test-artifacts/ui/."""

    def __init__(self, folder: Path, start: int = 0) -> None:
        self.folder = folder
        self.n = start
        ARTIFACTS.mkdir(parents=True, exist_ok=True)

    async def shoot(self, page: Page, name: str) -> Path:
        self.n += 1
        path = self.folder / f"{self.n:02d}-{name}.png"
        await page.screenshot(path=str(path), full_page=True)
        shutil.copy2(path, ARTIFACTS / path.name)
        return path


async def test_carol_works_her_customer_and_records_a_promise_in_a_browser(
    ui_stack: UiStack, browser: Browser, tmp_path: Path
) -> None:
    screens = Screens(tmp_path)
    acme = ui_stack.customers["acme"]["id"]
    overdue = ui_stack.invoices["acme-overdue"]
    context = await browser.new_context(viewport={"width": 1280, "height": 900})
    page = await context.new_page()
    errors: list[str] = []  # script errors, and failed loads but the deliberate wrong password
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on(
        "response",
        lambda r: (
            errors.append(f"{r.status} {r.url}")
            if r.status >= 400 and not (r.status == 401 and r.url.endswith("/login"))
            else None
        ),
    )

    # Signed out: the worklist sends you to the sign-in page.
    await page.goto(ui_stack.notify.url + "/")
    await expect(page).to_have_url(ui_stack.notify.url + "/login?next=%2F")
    await expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    await screens.shoot(page, "sign-in")

    # A wrong password is one plain sentence; then the right one, typed by keyboard.
    await page.get_by_label("User name").fill("carol")
    await page.get_by_label("Password").fill("wrong password")
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_role("alert")).to_have_text("The user name or the password is wrong.")
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_label("Password").press("Enter")

    # The worklist: her customer with its risk, overdue amount and stage; not Bob's.
    await expect(page).to_have_url(ui_stack.notify.url + "/")
    await expect(page.get_by_role("heading", name="Worklist")).to_be_visible()
    row = page.locator("table.worklist tbody tr", has_text="Acme Tools GmbH")
    await expect(row).to_have_count(1)
    await expect(row).to_contain_text("$1,250.00")  # overdue: A-1001
    await expect(page.get_by_text("Bobco Ltd")).to_have_count(0)
    await expect(page.get_by_text("Carol (collector)")).to_be_visible()
    await screens.shoot(page, "worklist")

    # j moves to the first row and Enter opens it: the worklist works by keyboard.
    await page.keyboard.press("j")
    await page.keyboard.press("Enter")
    await expect(page).to_have_url(f"{ui_stack.notify.url}/customers/{acme}")
    await expect(page.get_by_role("heading", name="Acme Tools GmbH")).to_be_visible()
    contacts = page.locator("#contacts")
    await expect(contacts.locator("li", has_text="Pat Payables")).to_contain_text("billing contact")
    await expect(page.locator("#balance")).to_contain_text("$1,250.00")
    await expect(page.locator("#dunning")).to_contain_text("What fires next (dry run)")
    timeline = page.locator("#timeline")
    await expect(timeline).to_contain_text("Invoice A-1001 issued")
    await expect(timeline).to_contain_text("Payment received by ach")
    await expect(page.locator("#paused")).to_have_count(0)
    await screens.shoot(page, "customer")

    # Record a promise to pay for the overdue invoice only.
    promised = (dt.datetime.now(dt.UTC).date() + dt.timedelta(days=10)).isoformat()
    form = page.locator("#promise-form")
    await form.get_by_label("A-1002", exact=False).uncheck()
    await form.get_by_label("Amount").fill("1250.00")
    await form.get_by_label("Promised date").fill(promised)
    await form.get_by_role("button", name="Record promise").click()

    await expect(page.get_by_role("status")).to_contain_text("Promise to pay recorded")
    await expect(page.locator("#paused")).to_contain_text(
        f"Paused on A-1001 until {promised} (promise to pay)"
    )
    await expect(page.locator("#paused")).not_to_contain_text("A-1002")
    await expect(timeline).to_contain_text(f"Promise to pay by {promised}")
    await expect(timeline).to_contain_text("recorded by carol")
    held = page.locator("#dunning tr.held")
    assert await held.count() >= 1, "no upcoming dunning step shows as held by the promise"
    await expect(held.first).to_contain_text(f"held: promise to pay until {promised}")
    await screens.shoot(page, "promise-recorded")

    # Back on the worklist, the account with a pending promise is marked and pushed down.
    await page.get_by_role("navigation").get_by_role("link", name="Worklist").click()
    await expect(
        page.locator("table.worklist tbody tr", has_text="Acme Tools GmbH")
    ).to_contain_text("promise pending")
    await screens.shoot(page, "worklist-after-promise")
    await context.close()

    # Dunning itself holds the promise and the pause, created with carol's own token.
    async with ui_stack.dunning.engine.connect() as conn:
        promise = (
            await conn.execute(
                text("SELECT id, amount, promised_date FROM promise WHERE customer_id = :c"),
                {"c": acme},
            )
        ).one()
        pauses = (
            await conn.execute(
                text("SELECT invoice_id, kind, ref, created_by FROM pause WHERE ref = :p"),
                {"p": promise.id},
            )
        ).all()
    assert promise.amount == 1_250_00
    assert promise.promised_date.isoformat() == promised
    assert [(p.invoice_id, p.kind, p.created_by) for p in pauses] == [
        (overdue["id"], "promise", "ui:carol")
    ]
    assert errors == []
    assert pngs(tmp_path) == [
        "01-sign-in.png",
        "02-worklist.png",
        "03-customer.png",
        "04-promise-recorded.png",
        "05-worklist-after-promise.png",
    ]


def watch_errors(page: Page) -> list[str]:
    """Script errors, failed loads and console errors (CSP violations among them) on `page`."""
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("response", lambda r: errors.append(f"{r.status} {r.url}") if r.status >= 400 else None)
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    return errors


async def sign_in(page: Page, base: str, user: str) -> None:
    await page.goto(base + "/login")
    await page.get_by_label("User name").fill(user)
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_role("heading", name="Worklist")).to_be_visible()


async def test_an_admin_works_the_actions_mail_dashboards_and_policies_in_a_browser(
    ui_stack: UiStack, browser: Browser, tmp_path: Path
) -> None:
    import json

    from dunning.domain.policy import DEFAULT_POLICY

    screens = Screens(tmp_path, start=5)  # numbered after the first test's five
    base = ui_stack.notify.url
    bobco = ui_stack.customers["bobco"]["id"]
    async with ui_stack.admin(ui_stack.dunning) as dun:
        r = await dun.post(
            "/v1/policies",
            json={
                "name": "Browser policy",
                "spec": DEFAULT_POLICY.model_dump(mode="json"),
                "segment_tags": ["browser-only"],
            },
            headers={"Idempotency-Key": "browser-policy-1"},
        )
        assert r.status_code == 201, r.text
    catch_mail(
        ui_stack,
        "ap@bobco.example",
        "Reminder: B-2001 is overdue",
        "<!DOCTYPE html><html><head><style>body { background: #f4f5f7; }</style></head>"
        "<body><p>Dear Pat, B-2001 is overdue.</p></body></html>",
        b"%PDF-1.4 browser",
    )
    context = await browser.new_context(viewport={"width": 1280, "height": 900})
    page = await context.new_page()
    errors = watch_errors(page)
    await sign_in(page, base, "ada")

    # The customer page's actions: a credit hold, then a message previewed and sent.
    await page.goto(f"{base}/customers/{bobco}")
    hold = page.locator("#hold-form")
    await hold.get_by_label("Reason").fill("120 days past due")
    await hold.get_by_role("button", name="Place credit hold").click()
    await expect(page.get_by_role("status")).to_have_text("Credit hold placed.")
    await expect(page.locator("#hold-form")).to_contain_text("on credit hold")
    await page.get_by_role("link", name="Offer a payment plan").click()
    message = page.locator("#message-form")
    await expect(message.get_by_label("Subject")).to_have_value(
        "A payment plan for your overdue balance"
    )
    await screens.shoot(page, "customer-actions")
    await message.get_by_role("button", name="Preview").click()
    preview = page.locator("#message-preview")
    await expect(preview).to_contain_text("Subject: A payment plan for your overdue balance")
    frame = page.frame_locator("#message-preview iframe.mail")
    await expect(frame.locator("body")).to_contain_text("split it into instalments")
    # the email's own <style> applies inside the sandboxed frame (allowed by its CSP hash)
    colour = await frame.locator("body").evaluate("b => getComputedStyle(b).backgroundColor")
    assert colour == "rgb(244, 245, 247)"
    await preview.scroll_into_view_if_needed()
    await screens.shoot(page, "message-preview")
    await preview.get_by_role("button", name="Send this message").click()
    await expect(page.get_by_role("status")).to_contain_text("Message queued")

    # Caught mail: the list, one message in its frame, its attachment.
    await page.get_by_role("navigation").get_by_role("link", name="Caught mail").click()
    await page.get_by_role("link", name="Reminder: B-2001 is overdue").first.click()
    shown = page.locator("#mail-shown")
    await expect(shown.get_by_role("heading", level=2)).to_have_text("Reminder: B-2001 is overdue")
    await expect(page.frame_locator("#mail-shown iframe.mail").locator("body")).to_contain_text(
        "B-2001 is overdue"
    )
    await expect(shown.locator("#attachments")).to_contain_text("invoice A-1001.pdf")
    async with page.expect_download() as download:
        await shown.get_by_role("link", name="invoice A-1001.pdf").click()
    assert (await download.value).suggested_filename == "invoice A-1001.pdf"
    await screens.shoot(page, "mail")

    # Dashboards: each chart as SVG beside its numbers.
    await page.get_by_role("navigation").get_by_role("link", name="Dashboards").click()
    await expect(page.get_by_role("heading", name="Dashboards")).to_be_visible()
    await expect(page.locator("#aging svg.chart")).to_be_visible()
    await expect(page.locator("#aging table")).to_contain_text("USD")
    await expect(page.locator("#at-risk svg.chart")).to_be_visible()
    await screens.shoot(page, "dashboards")

    # Policies: the list, one policy, the timeline it would give an invoice.
    await page.get_by_role("navigation").get_by_role("link", name="Policies").click()
    await expect(page.locator("#policies")).to_contain_text("Browser policy")
    await screens.shoot(page, "policies")
    await page.get_by_role("link", name="Browser policy").click()
    form = page.locator("#policy-form")
    spec = json.loads(await form.get_by_label("Spec").input_value())
    assert spec["steps"], "the spec is shown as JSON"
    await form.get_by_label("Invoice id").fill(ui_stack.invoices["bobco-1"]["id"])
    await form.get_by_role("button", name="Preview timeline").click()
    await expect(page.locator("#policy-preview")).to_contain_text("Timeline of B-2001")
    await screens.shoot(page, "policy-preview")
    await context.close()

    assert errors == []
    assert pngs(tmp_path) == [
        "06-customer-actions.png",
        "07-message-preview.png",
        "08-mail.png",
        "09-dashboards.png",
        "10-policies.png",
        "11-policy-preview.png",
    ]
