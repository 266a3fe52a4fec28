"""Delivery: invoices on issue with their PDF and the customer's PO/GL details, reminders once
and never for what is paid, bounces, thank-yous and good standing, rate limits, SMS."""

from __future__ import annotations

import datetime as dt
import email.utils
from typing import Any

import httpx
import pytest
from duewise_dev.catcher import Catcher
from duewise_events.catalogue import (
    ContactSnapshot,
    CreditHoldPlaced,
    DisputeOpened,
    InvoiceIssued,
    RiskSignalRaised,
)
from fastapi import FastAPI
from notify.config import Settings
from notify.lastlook import InvoiceApiLastLook, InvoiceState, LastLookUnavailable
from notify.models import CustomerProjection
from notify.render import Renderer
from notify_kit import (
    apply_events,
    customer,
    drain,
    events_from_invoice_outbox,
    html_of,
    invoice,
    last_look_for,
    mails_for,
    mails_to,
    make_sender,
    messages,
    outbox_events,
    payment,
    pdf_text,
    reminder,
    text_of,
    wrap,
)
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker


class OwedLastLook:
    """The invoice service's answer for tests that are not about the last look: all owed.

    It answers as the real one would for invoices nobody paid; the tests of the last look
    itself use the real invoice service.
    """

    def __init__(self, *invoices: InvoiceIssued) -> None:
        self.balances = {i.invoice_id: i.balance for i in invoices}
        self.asked: list[list[str]] = []

    async def states(self, invoice_ids: list[str]) -> dict[str, InvoiceState]:  # type: ignore[override]
        self.asked.append(list(invoice_ids))
        return {i: InvoiceState(status="open", balance=self.balances[i]) for i in invoice_ids}


async def test_an_issued_invoice_reaches_the_billing_contact_with_its_pdf_and_po_gl(
    maker: async_sessionmaker[AsyncSession], notify_settings: Settings, catcher: Catcher
) -> None:
    c = customer(email_="ap@acme.example", cc=["controller@acme.example"])
    inv = invoice(c.customer_id, number="INV-2026-0042")
    await apply_events(maker, c, inv)
    sender = make_sender(notify_settings, OwedLastLook(), maker)
    await drain(sender)

    [mail] = mails_to(catcher, "ap@acme.example")
    assert mails_to(catcher, "controller@acme.example") == [mail]  # the extra recipient, cc
    assert "INV-2026-0042" in mail["Subject"]
    assert mail["To"] == "Petra Payable <ap@acme.example>"
    body = text_of(mail)
    assert inv.po_number is not None
    assert inv.po_number in body
    assert "GL-7788" in body  # the customer's own GL code
    assert "€1,234.56" in body
    assert "https://pay.example.com/" in body
    assert inv.po_number in html_of(mail)
    pdf = pdf_text(mail)
    assert "INV-2026-0042" in pdf
    assert inv.po_number in pdf
    assert "GL-7788" in pdf
    assert "1,234.56" in pdf
    [msg] = await messages(maker, kind="invoice")
    assert msg.status == "sent"
    assert mail["Message-ID"] == f"<{msg.id}@duewise.local>"
    [sent] = await outbox_events(maker, "message.sent.v1")
    assert sent["message_id"] == msg.id
    assert sent["contact_ids"] == [f"con_{c.customer_id}_billing"]
    assert "ap@acme.example" not in str(sent)  # events carry contact ids, never addresses


async def test_an_invoice_in_the_customers_language_and_currency(
    maker: async_sessionmaker[AsyncSession], notify_settings: Settings, catcher: Catcher
) -> None:
    c = customer(email_="buch@firma.example", locale="de-DE")
    await apply_events(maker, c, invoice(c.customer_id, total=1_234_56))
    await drain(make_sender(notify_settings, OwedLastLook(), maker))
    [mail] = mails_to(catcher, "buch@firma.example")
    assert "1.234,56\xa0€" in text_of(mail)
    assert "Rechnung" in mail["Subject"]


async def test_imported_history_is_not_delivered_again(
    maker: async_sessionmaker[AsyncSession], notify_settings: Settings, catcher: Catcher
) -> None:
    c = customer()
    await apply_events(maker, c, invoice(c.customer_id, imported=True))
    await drain(make_sender(notify_settings, OwedLastLook(), maker))
    assert await messages(maker) == []
    assert list(catcher.store.mails) == []


async def test_an_invoice_before_its_customer_is_held_then_delivered(
    maker: async_sessionmaker[AsyncSession], notify_settings: Settings, catcher: Catcher
) -> None:
    c = customer(email_="late@acme.example")
    await apply_events(maker, invoice(c.customer_id))  # topics are not ordered against each other
    assert await messages(maker) == []
    await apply_events(maker, c)
    await drain(make_sender(notify_settings, OwedLastLook(), maker))
    assert len(mails_to(catcher, "late@acme.example")) == 1


async def test_the_same_reminder_three_times_gives_one_email(
    maker: async_sessionmaker[AsyncSession], notify_settings: Settings, catcher: Catcher
) -> None:
    c = customer(email_="ap3@acme.example")
    inv = invoice(c.customer_id, imported=True)
    due = reminder([inv])
    envelope = wrap(due)
    again = wrap(due)  # the same notice re-emitted by a restarted scheduler: a new event id
    await apply_events(maker, c, inv, envelope, envelope, again)
    sender = make_sender(notify_settings, OwedLastLook(inv), maker)
    await drain(sender)
    await apply_events(maker, envelope)  # and once more after it was sent
    await drain(sender)
    assert len(mails_to(catcher, "ap3@acme.example")) == 1
    [msg] = await messages(maker, kind="reminder")
    assert msg.status == "sent"
    assert msg.idempotency_key == f"reminder:{due.notice_id}"


async def test_a_reminder_lists_every_invoice_with_reply_links_in_its_tone(
    maker: async_sessionmaker[AsyncSession], notify_settings: Settings, catcher: Catcher
) -> None:
    c = customer(email_="ap4@acme.example")
    a, b = invoice(c.customer_id, imported=True), invoice(c.customer_id, total=99_00, imported=True)
    await apply_events(maker, c, a, b, reminder([a, b], tone="final"))
    await drain(make_sender(notify_settings, OwedLastLook(a, b), maker))
    [mail] = mails_to(catcher, "ap4@acme.example")
    body = text_of(mail)
    assert a.number in body
    assert b.number in body
    assert "http://notify.test/r/" in body
    assert "reason=already_paid" in body
    assert "reason=cash_flow" in body


async def _customer_with_invoices(
    client: httpx.AsyncClient, name: str, email_: str, prefix: str, totals: list[int]
) -> tuple[str, list[dict[str, Any]]]:
    """A German customer and its invoices, created in the real invoice service."""
    resp = await client.post(
        "/v1/customers",
        json={
            "name": name,
            "currency": "EUR",
            "country": "DE",
            "timezone": "Europe/Berlin",
            "contacts": [{"name": "AP", "email": email_, "role": "billing"}],
        },
    )
    assert resp.status_code == 201, resp.text
    cid = resp.json()["id"]
    invoices = []
    for n, total in enumerate(totals):
        r = await client.post(
            "/v1/invoices",
            json={
                "customer_id": cid,
                "number": f"{prefix}-{cid[-6:]}-{n}",
                "issue_date": "2026-10-01",
                "due_date": "2026-10-31",
                "currency": "EUR",
                "total": total,
            },
        )
        assert r.status_code == 201, r.text
        invoices.append(r.json())
    return cid, invoices


async def _paid_in_full(client: httpx.AsyncClient, cid: str, inv: dict[str, Any]) -> None:
    """A wire for the invoice's whole balance, posted at the real invoice service."""
    paid = await client.post(
        "/v1/payments",
        json={
            "customer_id": cid,
            "amount": inv["balance"],
            "currency": "EUR",
            "method": "wire",
            "received_at": "2026-11-01",
            "allocations": [{"invoice_id": inv["id"], "amount": inv["balance"]}],
        },
    )
    assert paid.status_code == 201, paid.text


async def test_a_reminder_for_an_invoice_paid_a_moment_earlier_is_not_sent(
    maker: async_sessionmaker[AsyncSession],
    notify_settings: Settings,
    catcher: Catcher,
    invoice_app: FastAPI,
    invoice_client: httpx.AsyncClient,
) -> None:
    # The real invoice service: a customer and two invoices...
    cid, invoices = await _customer_with_invoices(
        invoice_client, "Paid Promptly Ltd", "ap5@acme.example", "LL", [500_00, 500_00]
    )
    known = await events_from_invoice_outbox(invoice_app)
    await apply_events(maker, *[e for e in known if e.key == cid])
    # ...dunning decides a reminder for both; then the first is paid in the same second, and
    # notify has not heard of the payment yet (its event is still on its way).
    issued = [e.event() for e in known if e.type == "invoice.issued.v1" and e.key == cid]
    due = reminder(issued)  # type: ignore[arg-type]
    await apply_events(maker, due)
    await _paid_in_full(invoice_client, cid, invoices[0])
    sender = make_sender(notify_settings, last_look_for(invoice_client), maker)
    await drain(sender)
    [mail] = mails_for(catcher, await messages(maker, kind="reminder"))
    body = text_of(mail)
    assert invoices[1]["number"] in body
    assert invoices[0]["number"] not in body  # the paid one is not dunned

    # And when the other is paid too before the next reminder, nothing is sent at all.
    await invoice_client.post(
        "/v1/payments",
        json={
            "customer_id": cid,
            "amount": 500_00,
            "currency": "EUR",
            "method": "card",
            "received_at": "2026-11-02",
            "allocations": [{"invoice_id": invoices[1]["id"], "amount": 500_00}],
        },
    )
    second = reminder(issued, local_date=dt.date(2026, 12, 28))  # type: ignore[arg-type]
    await apply_events(maker, second)
    await drain(sender)
    assert len(mails_for(catcher, await messages(maker, kind="reminder"))) == 1
    [skipped] = await messages(maker, kind="reminder", status="skipped")
    assert skipped.reason is not None
    assert "per invoice API" in skipped.reason
    assert "paid" in skipped.reason


class PaysAfterTheFirstLook:
    """The real invoice service as the last look, with the race made certain: right after
    the sender's first look found the invoice owed, its payment is posted and committed."""

    def __init__(self, client: httpx.AsyncClient, payment: dict[str, object]) -> None:
        self.real = last_look_for(client)
        self.client = client
        self.payment: dict[str, object] | None = payment
        self.answers: list[dict[str, InvoiceState]] = []

    async def states(self, invoice_ids: list[str]) -> dict[str, InvoiceState]:  # type: ignore[override]
        answer = await self.real.states(invoice_ids)
        self.answers.append(answer)
        if self.payment is not None:
            paid = await self.client.post("/v1/payments", json=self.payment)
            assert paid.status_code == 201, paid.text
            self.payment = None
        return answer


async def test_a_payment_after_the_last_look_withdraws_the_reminder_inside_the_smtp_transaction(
    maker: async_sessionmaker[AsyncSession],
    notify_settings: Settings,
    catcher: Catcher,
    invoice_app: FastAPI,
    invoice_client: httpx.AsyncClient,
) -> None:
    cid, [inv] = await _customer_with_invoices(
        invoice_client, "Just In Time GmbH", "ap-jit@acme.example", "JIT", [700_00]
    )
    invoice_id = inv["id"]
    known = await events_from_invoice_outbox(invoice_app)
    await apply_events(maker, *[e for e in known if e.key == cid])
    issued = [e.event() for e in known if e.type == "invoice.issued.v1" and e.key == cid]
    await apply_events(maker, reminder(issued))  # type: ignore[arg-type]
    look = PaysAfterTheFirstLook(
        invoice_client,
        {
            "customer_id": cid,
            "amount": 700_00,
            "currency": "EUR",
            "method": "wire",
            "received_at": "2026-11-01",
            "allocations": [{"invoice_id": invoice_id, "amount": 700_00}],
        },
    )
    sender = make_sender(notify_settings, look, maker)
    await drain(sender)

    # The first look said owed; the payment committed; the second look, asked with the SMTP
    # envelope open, saw it and the envelope was reset: no message data ever went out.
    assert look.answers[0][invoice_id].owed
    assert not look.answers[1][invoice_id].owed
    [msg] = await messages(maker, kind="reminder")
    assert mails_for(catcher, [msg]) == []
    assert msg.status == "skipped", msg
    assert msg.reason is not None
    assert "paid" in msg.reason
    assert msg.attempts == 1  # the withdrawal was not a failed attempt
    async with maker() as session:
        outcomes = (
            await session.execute(
                text(
                    "SELECT outcome, response FROM delivery_attempt WHERE message_id = :m "
                    "ORDER BY id"
                ),
                {"m": msg.id},
            )
        ).all()
    assert [o for o, _ in outcomes] == ["deferred", "skipped"], outcomes
    assert "withdrawn before the send" in outcomes[0][1]
    assert "changed at the last moment" in outcomes[0][1]


async def test_a_reminder_for_what_notify_already_knows_is_paid_or_disputed_is_skipped(
    maker: async_sessionmaker[AsyncSession], notify_settings: Settings, catcher: Catcher
) -> None:
    c = customer(email_="ap6@acme.example")
    paid, disputed = invoice(c.customer_id), invoice(c.customer_id)
    look = OwedLastLook()
    await apply_events(
        maker,
        c,
        paid,
        disputed,
        payment(paid),
        DisputeOpened(
            customer_id=c.customer_id,
            dispute_id="dsp_1",
            invoice_id=disputed.invoice_id,
            reason="wrong quantity",
            opened_at=dt.datetime.now(dt.UTC),
        ),
        reminder([paid, disputed]),
    )
    await drain(make_sender(notify_settings, look, maker))
    [skipped] = await messages(maker, kind="reminder")
    assert skipped.status == "skipped"
    assert skipped.reason is not None
    assert "paid in notify's projection" in skipped.reason
    assert "disputed in notify's projection" in skipped.reason
    assert look.asked == [[]]  # nothing left worth asking the invoice service about
    assert [m["Subject"] for m in mails_to(catcher, "ap6@acme.example")] != []  # the invoices
    assert all(
        "Reminder" not in (m["Subject"] or "") for m in mails_to(catcher, "ap6@acme.example")
    )


async def test_a_reminder_waits_when_the_invoice_service_cannot_be_asked(
    maker: async_sessionmaker[AsyncSession], notify_settings: Settings, catcher: Catcher
) -> None:
    class Down:
        async def states(self, invoice_ids: list[str]) -> dict[str, InvoiceState]:
            raise LastLookUnavailable("invoice API: ConnectError")

    c = customer(email_="ap7@acme.example")
    inv = invoice(c.customer_id, imported=True)
    await apply_events(maker, c, inv, reminder([inv]))
    await drain(make_sender(notify_settings, Down(), maker))  # type: ignore[arg-type]
    [msg] = await messages(maker, kind="reminder")
    assert msg.status == "pending"
    assert msg.reason is not None
    assert "last look unavailable" in msg.reason
    assert msg.not_before > dt.datetime.now(dt.UTC)
    assert mails_to(catcher, "ap7@acme.example") == []


async def test_a_550_at_rcpt_marks_the_contact_undeliverable_and_alerts_the_owner(
    maker: async_sessionmaker[AsyncSession], notify_settings: Settings, catcher: Catcher
) -> None:
    c = customer(
        email_="gone@undeliverable.example",
        owner="alice@collectors.example",
        extra_contacts=[
            ContactSnapshot(id="con_ok", name="Olga", email="olga@acme.example", role="billing")
        ],
    )
    await apply_events(maker, c, invoice(c.customer_id))
    await drain(make_sender(notify_settings, OwedLastLook(), maker))

    assert len(mails_to(catcher, "olga@acme.example")) == 1  # the other billing contact got it
    [failed] = [
        e for e in await outbox_events(maker, "message.failed.v1") if e["contact_undeliverable"]
    ]
    assert failed["contact_id"] == f"con_{c.customer_id}_billing"
    assert "550" in failed["reason"]
    async with maker() as session:
        projected = await session.get(CustomerProjection, c.customer_id)
        assert projected is not None
        bad = next(x for x in projected.contacts if x["id"] == failed["contact_id"])
        assert bad["undeliverable"] is True
    [alert] = mails_to(catcher, "alice@collectors.example")
    assert "gone@undeliverable.example" in text_of(alert)

    # The next message leaves the undeliverable contact out.
    await apply_events(maker, invoice(c.customer_id))
    await drain(make_sender(notify_settings, OwedLastLook(), maker))
    assert len(mails_to(catcher, "olga@acme.example")) == 2
    assert mails_to(catcher, "gone@undeliverable.example") == []


async def test_every_recipient_refused_fails_the_message_and_alerts_the_team(
    maker: async_sessionmaker[AsyncSession], notify_settings: Settings, catcher: Catcher
) -> None:
    c = customer(email_="nobody@undeliverable.example", owner="bob")  # an owner without an address
    await apply_events(maker, c, invoice(c.customer_id))
    await drain(make_sender(notify_settings, OwedLastLook(), maker))
    [msg] = await messages(maker, kind="invoice")
    assert msg.status == "failed"
    assert msg.reason is not None
    assert "550" in msg.reason
    [alert] = mails_to(catcher, "collections@example.com")  # the team's inbox
    assert "bob" in text_of(alert) or "INV" in text_of(alert) or "invoice" in text_of(alert)


async def test_a_contact_without_an_address_fails_with_the_reason_and_nothing_else_stops(
    maker: async_sessionmaker[AsyncSession], notify_settings: Settings, catcher: Catcher
) -> None:
    silent = customer(extra_contacts=[])
    silent = silent.model_copy(update={"contacts": []})
    fine = customer(email_="fine@acme.example")
    await apply_events(maker, silent, invoice(silent.customer_id), fine, invoice(fine.customer_id))
    await drain(make_sender(notify_settings, OwedLastLook(), maker))
    [failed] = await messages(maker, kind="invoice", status="failed")
    assert failed.customer_id == silent.customer_id
    assert failed.reason == "no contact with a deliverable email address for this message"
    assert len(mails_to(catcher, "fine@acme.example")) == 1
    assert len(mails_to(catcher, "alice@collectors.example")) == 1  # the owner is told


async def test_a_template_that_fails_marks_the_message_failed_and_alerts(
    maker: async_sessionmaker[AsyncSession],
    notify_settings: Settings,
    catcher: Catcher,
    tmp_path: pytest.TempPathFactory,
) -> None:
    broken = tmp_path / "en"  # type: ignore[operator]
    broken.mkdir()
    (broken / "invoice.subject.j2").write_text("Invoice {{ no_such_thing.number }}")
    c = customer(email_="tpl@acme.example")
    await apply_events(maker, c, invoice(c.customer_id))
    renderer = Renderer(tmp_path, notify_settings.payment_link_template)  # type: ignore[arg-type]
    await drain(make_sender(notify_settings, OwedLastLook(), maker, renderer=renderer))
    [failed] = await messages(maker, kind="invoice")
    assert failed.status == "failed"
    assert failed.reason is not None
    assert "invoice.subject.j2" in failed.reason
    assert mails_to(catcher, "tpl@acme.example") == []
    assert len(mails_to(catcher, "alice@collectors.example")) == 1


async def test_thank_you_for_paying_on_time_and_good_standing_after_six(
    maker: async_sessionmaker[AsyncSession], notify_settings: Settings, catcher: Catcher
) -> None:
    c = customer(email_="good@acme.example")
    await apply_events(maker, c)
    invoices = [invoice(c.customer_id, imported=True) for _ in range(7)]
    await apply_events(maker, *invoices)
    late = payment(invoices[0], received_at=invoices[0].due_date + dt.timedelta(days=3))
    await apply_events(maker, late)
    for inv in invoices[1:6]:
        await apply_events(maker, payment(inv, received_at=inv.due_date - dt.timedelta(days=2)))
    assert await outbox_events(maker, "customer.good_standing.v1") == []  # five in a row so far
    await apply_events(maker, payment(invoices[6], received_at=invoices[6].due_date))
    [standing] = await outbox_events(maker, "customer.good_standing.v1")
    assert standing["on_time_streak"] == 6
    await drain(make_sender(notify_settings, OwedLastLook(), maker))
    kinds = sorted(m.kind for m in await messages(maker, status="sent"))
    assert kinds == ["good_standing"] + ["thank_you"] * 6  # none for the late payment
    mails = mails_to(catcher, "good@acme.example")
    optional = [m for m in mails if m["List-Unsubscribe"]]
    assert len(optional) == 7  # thank-yous and good standing may be unsubscribed from
    assert optional[0]["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


async def test_unsubscribed_contacts_get_no_thank_yous_but_still_invoices(
    maker: async_sessionmaker[AsyncSession],
    notify_settings: Settings,
    catcher: Catcher,
    nclient: httpx.AsyncClient,
) -> None:
    c = customer(email_="quiet@acme.example")
    first = invoice(c.customer_id, imported=True)
    await apply_events(maker, c, first, payment(first, received_at=first.due_date))
    sender = make_sender(notify_settings, OwedLastLook(), maker)
    await drain(sender)
    [thanks] = mails_to(catcher, "quiet@acme.example")
    url = thanks["List-Unsubscribe"].strip().strip("<>")
    assert (await nclient.get(url)).status_code == 200  # a scanner opening it changes nothing
    assert (await nclient.post(url, data={"List-Unsubscribe": "One-Click"})).status_code == 200
    second = invoice(c.customer_id)
    await apply_events(maker, second, payment(second, received_at=second.due_date))
    await drain(sender)
    subjects = [m["Subject"] for m in mails_to(catcher, "quiet@acme.example")]
    assert len(subjects) == 2  # the first thank-you and the new invoice; no second thank-you
    [thank_you] = await messages(maker, kind="thank_you", status="failed")
    assert thank_you.reason == "no contact with a deliverable email address for this message"


async def test_a_bug_upstream_cannot_flood_a_customer(
    maker: async_sessionmaker[AsyncSession], notify_settings: Settings, catcher: Catcher
) -> None:
    c = customer(email_="flood@acme.example")
    await apply_events(maker, c, *[invoice(c.customer_id) for _ in range(4)])
    await drain(make_sender(notify_settings, OwedLastLook(), maker, rate_limit_email_per_day=3))
    statuses = sorted(m.status for m in await messages(maker, kind="invoice"))
    assert statuses == ["sent", "sent", "sent", "suppressed"]
    assert len(mails_to(catcher, "flood@acme.example")) == 3
    [alert] = mails_to(catcher, "alice@collectors.example")
    assert "rate limit" in text_of(alert)


async def test_an_sms_reminder_goes_to_the_e164_number_outside_quiet_hours(
    maker: async_sessionmaker[AsyncSession], notify_settings: Settings, catcher: Catcher
) -> None:
    c = customer(email_="sms@acme.example", phone="030 1234567", country="DE", tz="Europe/Berlin")
    inv = invoice(c.customer_id, imported=True)
    await apply_events(maker, c, inv, reminder([inv], channel="sms"))
    night = dt.datetime(2026, 12, 27, 22, 30, tzinfo=dt.UTC)  # 23:30 in Berlin
    await drain(make_sender(notify_settings, OwedLastLook(inv), maker, now=night))
    [waiting] = await messages(maker, kind="reminder")
    assert waiting.status == "pending"
    assert waiting.not_before == dt.datetime(2026, 12, 28, 7, 0, tzinfo=dt.UTC)  # 08:00 Berlin
    assert list(catcher.store.sms) == []
    morning = dt.datetime(2026, 12, 28, 7, 5, tzinfo=dt.UTC)
    await drain(make_sender(notify_settings, OwedLastLook(inv), maker, now=morning))
    [sms] = list(catcher.store.sms)
    assert sms.to == "+49301234567"
    assert "€1,234.56" in sms.body

    [sent] = await messages(maker, kind="reminder")
    assert sent.status == "sent"
    assert sent.attempts == 1  # waiting for the morning was not a failed attempt


async def test_a_dsn_bounce_marks_the_contact_undeliverable(
    maker: async_sessionmaker[AsyncSession],
    notify_settings: Settings,
    catcher: Catcher,
    nclient: httpx.AsyncClient,
) -> None:
    c = customer(email_="later-bounce@acme.example")
    await apply_events(maker, c, invoice(c.customer_id))
    await drain(make_sender(notify_settings, OwedLastLook(), maker))
    [mail] = mails_to(catcher, "later-bounce@acme.example")
    dsn = (
        "From: MAILER-DAEMON@mx.acme.example\r\n"
        "To: ar@duewise.local\r\n"
        "Subject: Undelivered Mail Returned to Sender\r\n"
        f"Date: {email.utils.formatdate()}\r\n"
        "MIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="B"\r\n\r\n'
        "--B\r\nContent-Type: text/plain\r\n\r\nThe mail could not be delivered.\r\n"
        "--B\r\nContent-Type: message/delivery-status\r\n\r\n"
        "Reporting-MTA: dns; mx.acme.example\r\n\r\n"
        "Final-Recipient: rfc822; later-bounce@acme.example\r\n"
        "Action: failed\r\nStatus: 5.1.1\r\n"
        "Diagnostic-Code: smtp; 550 5.1.1 user unknown\r\n\r\n"
        "--B\r\nContent-Type: text/rfc822-headers\r\n\r\n"
        f"Message-ID: {mail['Message-ID']}\r\nSubject: {mail['Subject']}\r\n\r\n"
        "--B--\r\n"
    )
    resp = await nclient.post(
        "/v1/bounces", content=dsn.encode(), headers={"content-type": "message/rfc822"}
    )
    assert resp.status_code == 200, resp.text
    [outcome] = resp.json()["recipients"]
    assert outcome["applied"] is True
    assert outcome["contact_id"] == f"con_{c.customer_id}_billing"
    [msg] = await messages(maker, kind="invoice")
    assert msg.status == "failed"
    [failed] = await outbox_events(maker, "message.failed.v1")
    assert failed["contact_undeliverable"] is True
    assert (await nclient.post("/v1/bounces", content=b"hello")).status_code == 422


async def test_a_credit_hold_notifies_the_customer_and_alerts_the_owner_and_signals_alert(
    maker: async_sessionmaker[AsyncSession], notify_settings: Settings, catcher: Catcher
) -> None:
    c = customer(email_="hold@acme.example", owner="alice@collectors.example")
    now = dt.datetime.now(dt.UTC)
    await apply_events(
        maker,
        c,
        CreditHoldPlaced(
            customer_id=c.customer_id,
            hold_id="hold_1",
            reason="overdue over 60 days",
            automatic=True,
            overdue_balance=5_000_00,
            currency="EUR",
            placed_at=now,
        ),
        RiskSignalRaised(
            customer_id=c.customer_id,
            signal_id="sig_1",
            kind="contact_problem",
            summary="Three 'not received' responses in 60 days.",
            recommendation="Check the billing contact.",
            raised_at=now,
        ),
        RiskSignalRaised(
            customer_id=c.customer_id,
            signal_id="sig_1",
            kind="contact_problem",
            summary="the same episode again",
            raised_at=now,
        ),
    )
    await drain(make_sender(notify_settings, OwedLastLook(), maker))
    [notice] = mails_to(catcher, "hold@acme.example")
    assert "€5,000.00" in text_of(notice)
    alerts = mails_to(catcher, "alice@collectors.example")
    assert len(alerts) == 2  # the hold and the signal, once each
    bodies = "\n".join(text_of(a) for a in alerts)
    assert "overdue over 60 days" in bodies
    assert "Check the billing contact." in bodies


async def test_a_task_step_alerts_the_owner_instead_of_writing_to_the_customer(
    maker: async_sessionmaker[AsyncSession], notify_settings: Settings, catcher: Catcher
) -> None:
    c = customer(email_="task@acme.example")
    inv = invoice(c.customer_id, imported=True)
    await apply_events(maker, c, inv, reminder([inv], channel="task"))
    await drain(make_sender(notify_settings, OwedLastLook(inv), maker))
    assert mails_to(catcher, "task@acme.example") == []
    [alert] = mails_to(catcher, "alice@collectors.example")
    assert "7-days-late" in text_of(alert)


class CountingClient:
    """A real httpx client on the real invoice service that counts the requests it sends
    (an httpx event hook, so what is counted is what went over the transport)."""

    def __init__(self, invoice_app: FastAPI, like: httpx.AsyncClient) -> None:
        self.sent: list[httpx.Request] = []
        self.client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=invoice_app),
            base_url=like.base_url,
            headers=like.headers,
            event_hooks={"request": [self._count]},
        )

    async def _count(self, request: httpx.Request) -> None:
        self.sent.append(request)

    def ids_asked(self) -> list[list[str]]:
        return [r.url.params.get_list("id") for r in self.sent]


async def test_a_reminder_for_twelve_invoices_costs_one_request_per_look_and_skips_the_paid(
    maker: async_sessionmaker[AsyncSession],
    notify_settings: Settings,
    catcher: Catcher,
    invoice_app: FastAPI,
    invoice_client: httpx.AsyncClient,
) -> None:
    cid, invoices = await _customer_with_invoices(
        invoice_client, "Twelve Open AG", "ap-twelve@acme.example", "TW", [100_00] * 12
    )
    known = await events_from_invoice_outbox(invoice_app)
    await apply_events(maker, *[e for e in known if e.key == cid])
    issued = [e.event() for e in known if e.type == "invoice.issued.v1" and e.key == cid]
    await apply_events(maker, reminder(issued))  # type: ignore[arg-type]
    # Paid at the invoice service in the same second; notify has not heard of it.
    await _paid_in_full(invoice_client, cid, invoices[0])
    counting = CountingClient(invoice_app, invoice_client)
    try:
        # (the twelve invoice mails sent on issue would otherwise use up the day's limit)
        look = InvoiceApiLastLook(counting.client)
        await drain(make_sender(notify_settings, look, maker, rate_limit_email_per_day=100))
    finally:
        await counting.client.aclose()

    # Two requests for the reminder, not 24: the look before rendering (all twelve) and the
    # one inside the SMTP transaction (the eleven still owed).
    assert [(r.method, r.url.path) for r in counting.sent] == [("GET", "/v1/invoices")] * 2
    first, second = counting.ids_asked()
    assert sorted(first) == sorted(i["id"] for i in invoices)
    assert sorted(second) == sorted(i["id"] for i in invoices[1:])
    [mail] = mails_for(catcher, await messages(maker, kind="reminder"))
    body = text_of(mail)
    assert invoices[0]["number"] not in body  # the paid one is not dunned
    assert all(i["number"] in body for i in invoices[1:])


async def test_the_last_look_asks_200_ids_a_request_and_reads_unknown_ones_as_not_owed(
    invoice_app: FastAPI, invoice_client: httpx.AsyncClient
) -> None:
    _, [inv] = await _customer_with_invoices(
        invoice_client, "Many Ids SA", "ap-many@acme.example", "MI", [300_00]
    )
    unknown = [f"inv_{n:032x}" for n in range(449)]  # as long as real ids
    counting = CountingClient(invoice_app, invoice_client)
    try:
        states = await InvoiceApiLastLook(counting.client).states([*unknown, inv["id"]])
    finally:
        await counting.client.aclose()
    assert [len(ids) for ids in counting.ids_asked()] == [200, 200, 50]
    assert states[inv["id"]] == InvoiceState(status="open", balance=300_00)
    assert states[inv["id"]].owed
    assert len(states) == 450
    assert not any(states[i].owed for i in unknown)


async def test_an_unreachable_invoice_api_means_try_later_never_not_owed() -> None:
    # Nothing listens on port 9 of loopback: "unavailable" (the sender retries), not an
    # empty answer that would read as "nothing owed".
    unreachable = InvoiceApiLastLook.from_settings("http://127.0.0.1:9", None, 0.5)
    try:
        with pytest.raises(LastLookUnavailable, match="ConnectError"):
            await unreachable.states(["inv_any"])
        assert await unreachable.states([]) == {}  # nothing listed: nothing asked
    finally:
        await unreachable.aclose()
