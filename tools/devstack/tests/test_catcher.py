"""The local catcher: real SMTP and HTTP servers in the test's event loop."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from email.message import EmailMessage

import aiosmtplib
import httpx
import pytest
from duewise_dev._util import free_port
from duewise_dev.catcher import Catcher


@pytest.fixture
async def catcher() -> AsyncIterator[Catcher]:
    c = Catcher(smtp_port=free_port(), http_port=free_port())
    await c.start()
    try:
        yield c
    finally:
        await c.stop()


def _mail(to: str, *, pdf: bytes | None = None) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = "Acme AR <ar@acme.example>"
    msg["To"] = f'"Doe, Jane" <{to}>'
    msg["Subject"] = "Invoice INV-1 <due>"
    msg["Message-ID"] = "<inv-1@acme.example>"
    msg.set_content("Please pay.")
    msg.add_alternative("<p>Please <b>pay</b>.</p>", subtype="html")
    if pdf is not None:
        msg.add_attachment(pdf, maintype="application", subtype="pdf", filename="INV-1.pdf")
    return msg


async def test_mail_is_caught_and_listed_with_its_attachment(catcher: Catcher) -> None:
    pdf = b"%PDF-1.4 fake invoice"
    errors, response = await aiosmtplib.send(
        _mail("billing@customer.example", pdf=pdf),
        hostname=catcher.host,
        port=catcher.smtp_port,
        start_tls=False,
    )
    assert errors == {}
    assert response.startswith("OK queued as ")
    async with httpx.AsyncClient(base_url=catcher.http_url) as http:
        listed = (await http.get("/api/messages")).json()
        assert len(listed) == 1
        summary = listed[0]
        assert summary["subject"] == "Invoice INV-1 <due>"
        assert summary["message_id"] == "<inv-1@acme.example>"
        assert summary["recipients"] == ["billing@customer.example"]
        assert summary["to"] == ['"Doe, Jane" <billing@customer.example>']
        assert summary["attachments"] == ["INV-1.pdf"]

        detail = (await http.get(f"/api/messages/{summary['id']}")).json()
        assert detail["text"].strip() == "Please pay."
        assert "<b>pay</b>" in detail["html"]
        assert ["Message-ID", "<inv-1@acme.example>"] in detail["headers"]
        assert detail["attachments"][0]["content_type"] == "application/pdf"

        att = await http.get(f"/api/messages/{summary['id']}/attachments/0")
        assert att.status_code == 200
        assert att.content == pdf
        assert att.headers["content-type"] == "application/pdf"
        assert (await http.get(f"/api/messages/{summary['id']}/attachments/1")).status_code == 404
        assert (await http.get("/api/messages/999")).status_code == 404

        index = (await http.get("/")).text
        assert "Invoice INV-1 &lt;due&gt;" in index  # escaped
        assert "<due>" not in index
        assert "INV-1.pdf" in index

        assert (await http.get("/healthz")).json() == {"status": "ok", "messages": 1, "sms": 0}
        assert (await http.delete("/api/messages")).status_code == 204
        assert (await http.get("/api/messages")).json() == []


async def test_undeliverable_domain_is_refused_at_rcpt(catcher: Catcher) -> None:
    smtp = aiosmtplib.SMTP(hostname=catcher.host, port=catcher.smtp_port, start_tls=False)
    await smtp.connect()
    try:
        errors, _ = await smtp.send_message(
            _mail("ok@customer.example"),
            recipients=["gone@undeliverable.example", "ok@customer.example"],
        )
        assert errors["gone@undeliverable.example"].code == 550
        assert "5.1.1 mailbox unavailable" in errors["gone@undeliverable.example"].message
        with pytest.raises(aiosmtplib.SMTPRecipientsRefused):
            await smtp.send_message(_mail("x@UNDELIVERABLE.example"))
    finally:
        await smtp.quit()
    assert [m.rcpt_tos for m in catcher.store.mails] == [["ok@customer.example"]]


async def test_twilio_shaped_sms(catcher: Catcher) -> None:
    url = f"{catcher.http_url}/2010-04-01/Accounts/AC123/Messages.json"
    async with httpx.AsyncClient() as http:
        ok = await http.post(
            url,
            data={"To": "+4915112345678", "From": "+15005550006", "Body": "Reminder"},
            auth=("AC123", "token"),
            headers={"Idempotency-Key": "k1"},
        )
        assert ok.status_code == 201
        body = ok.json()
        assert body["sid"].startswith("SM")
        assert body["status"] == "queued"
        again = await http.post(
            url,
            data={"To": "+4915112345678", "From": "+15005550006", "Body": "Reminder"},
            auth=("AC123", "token"),
            headers={"Idempotency-Key": "k1"},
        )
        assert again.json()["sid"] == body["sid"]

        bad = await http.post(
            url, data={"To": "0151 123", "From": "+1500", "Body": "x"}, auth=("AC123", "t")
        )
        assert bad.status_code == 400
        assert bad.json()["code"] == 21211
        unauth = await http.post(url, data={"To": "+4915112345678", "From": "+1", "Body": "x"})
        assert unauth.status_code == 401

        listed = (await http.get(f"{catcher.http_url}/api/sms")).json()
        assert [s["sid"] for s in listed] == [body["sid"]]
        assert listed[0]["to"] == "+4915112345678"
        assert "Reminder" in (await http.get(f"{catcher.http_url}/")).text


async def test_unknown_charset_is_shown_not_fatal(catcher: Catcher) -> None:
    raw = (
        b"From: a@b.example\r\nTo: c@d.example\r\nSubject: odd\r\n"
        b"Content-Type: text/plain; charset=x-unknown-charset\r\n\r\nHallo \xe4\r\n"
    )
    await aiosmtplib.send(
        raw,
        sender="a@b.example",
        recipients=["c@d.example"],
        hostname=catcher.host,
        port=catcher.smtp_port,
        start_tls=False,
    )
    async with httpx.AsyncClient(base_url=catcher.http_url) as http:
        [summary] = (await http.get("/api/messages")).json()
        detail = (await http.get(f"/api/messages/{summary['id']}")).json()
    assert detail["text"].startswith("Hallo ")


async def test_store_is_bounded() -> None:
    c = Catcher(smtp_port=0, http_port=0, capacity=3)
    await c.start()
    try:
        for n in range(5):
            await aiosmtplib.send(
                _mail(f"u{n}@customer.example"),
                hostname=c.host,
                port=c.smtp_port,
                start_tls=False,
            )
        assert [m.rcpt_tos[0] for m in c.store.mails] == [
            "u2@customer.example",
            "u3@customer.example",
            "u4@customer.example",
        ]
    finally:
        await c.stop()


async def test_command_line_starts_both_servers() -> None:
    smtp_port, http_port = free_port(), free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "duewise_dev.catcher",
            "--smtp-port",
            str(smtp_port),
            "--http-port",
            str(http_port),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = await asyncio.to_thread(proc.stdout.readline)
        assert f"HTTP on http://127.0.0.1:{http_port}/" in line
        async with httpx.AsyncClient() as http:
            health = await http.get(f"http://127.0.0.1:{http_port}/healthz")
        assert health.json()["status"] == "ok"
        await aiosmtplib.send(
            _mail("a@customer.example"), hostname="127.0.0.1", port=smtp_port, start_tls=False
        )
    finally:
        proc.terminate()
        # uvicorn shuts down gracefully, then re-raises the signal it caught.
        assert await asyncio.to_thread(proc.wait, 10) in (0, -signal.SIGTERM)
