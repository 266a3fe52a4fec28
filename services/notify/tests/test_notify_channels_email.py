"""SMTP email against real aiosmtpd servers: content, connection reuse, refusals, TLS, drops."""

from __future__ import annotations

import asyncio
import email
import email.policy
import socket
import ssl
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from duewise_dev._util import free_port
from notify.channels.email import (
    Attachment,
    OutgoingEmail,
    SendError,
    SmtpSender,
    Withdrawn,
    build_message,
    parse_dsn,
)

PDF = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"


class Recorder:
    """aiosmtpd hooks that record what arrives and misbehave on request."""

    def __init__(
        self,
        *,
        refuse: dict[str, str] | None = None,
        mail_reply: str | None = None,
        data_reply: str | None = None,
        drop_at_mail: int = 0,
        drop_at_data: bool = False,
        per_connection: int = 0,
        data_delay: float = 0.0,
    ) -> None:
        self.data_delay = data_delay
        self.per_connection = per_connection  # a relay's limit of messages per connection
        self.counts: dict[Any, int] = {}
        self.refuse = refuse or {}
        self.mail_reply = mail_reply
        self.data_reply = data_reply
        self.drop_at_mail = drop_at_mail  # drop the connection at this many MAIL commands
        self.drop_at_data = drop_at_data
        self.mails = 0
        self.peers: set[Any] = set()
        self.received: list[tuple[str, list[str], bytes]] = []
        self.sessions: list[Any] = []
        self.tls: list[bool] = []  # per MAIL command: was the connection encrypted

    async def handle_MAIL(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        self.peers.add(session.peer)
        self.sessions.append(session)
        self.tls.append(server.transport.get_extra_info("ssl_object") is not None)
        if self.drop_at_mail > 0:
            self.drop_at_mail -= 1
            server.transport.close()
            return "421 going away"
        if self.mail_reply:
            return self.mail_reply
        self.counts[session.peer] = self.counts.get(session.peer, 0) + 1
        if self.per_connection and self.counts[session.peer] > self.per_connection:
            return "421 4.7.0 too many messages on this connection"
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        if address in self.refuse:
            return self.refuse[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        await asyncio.sleep(self.data_delay)
        if self.drop_at_data:
            server.transport.close()
            return "451 gone"
        if self.data_reply:
            return self.data_reply
        self.received.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.content))
        return f"250 OK queued as Q{len(self.received)}"


@contextmanager
def smtp_server(handler: Recorder, host: str = "127.0.0.1", **kwargs: Any) -> Iterator[Controller]:
    controller = Controller(handler, hostname=host, port=free_port(host), **kwargs)
    controller.start()
    try:
        yield controller
    finally:
        controller.stop()


def outgoing(n: int = 1, **changes: Any) -> OutgoingEmail:
    fields: dict[str, Any] = {
        "message_id": f"<msg-{n}@notify.duewise.example>",
        "from_addr": "Acme Receivables <ar@acme.example>",
        "to": ["Billing <billing@customer.example>"],
        "cc": ["cfo@customer.example"],
        "subject": f"Rechnung fällig: INV-{n}",
        "text": f"Bitte zahlen Sie INV-{n}: 1.234,56 €",
        "html": f"<p>Bitte zahlen Sie <b>INV-{n}</b>: 1.234,56&nbsp;€</p>",
        "attachments": [Attachment(f"INV-{n}.pdf", "application/pdf", PDF)],
        "headers": {
            "List-Unsubscribe": "<https://notify.example/u/abc>, <mailto:unsub@acme.example>",
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
            "X-Duewise-Message": f"m-{n}",
        },
        "reply_to": "replies+m1@acme.example",
    }
    fields.update(changes)
    return OutgoingEmail(**fields)


def sender_for(controller: Controller, **kwargs: Any) -> SmtpSender:
    return SmtpSender.from_url(
        f"smtp://127.0.0.1:{controller.port}", from_addr="bounces@acme.example", **kwargs
    )


async def test_message_arrives_whole() -> None:
    handler = Recorder()
    with smtp_server(handler) as server:
        sender = sender_for(server)
        result = await sender.send(outgoing())
        await sender.aclose()
    assert result.accepted == ["billing@customer.example", "cfo@customer.example"]
    assert result.refused == {}
    assert result.response == "250 OK queued as Q1"
    [(mail_from, rcpts, raw)] = handler.received
    assert mail_from == "bounces@acme.example"  # the envelope sender, where bounces go
    assert rcpts == ["billing@customer.example", "cfo@customer.example"]
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    assert msg["Message-ID"] == "<msg-1@notify.duewise.example>"
    assert msg["Subject"] == "Rechnung fällig: INV-1"
    assert msg["From"] == "Acme Receivables <ar@acme.example>"
    assert msg["Cc"] == "cfo@customer.example"
    assert msg["Reply-To"] == "replies+m1@acme.example"
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert msg["List-Unsubscribe"].startswith("<https://notify.example/u/abc>")
    assert msg["X-Duewise-Message"] == "m-1"
    assert msg["Date"] is not None
    assert msg.get_content_type() == "multipart/mixed"
    text = msg.get_body(preferencelist=("plain",))
    html = msg.get_body(preferencelist=("html",))
    assert text is not None
    assert html is not None
    assert "1.234,56 €" in text.get_content()
    assert "<b>INV-1</b>" in html.get_content()
    [pdf] = list(msg.iter_attachments())
    assert pdf.get_filename() == "INV-1.pdf"
    assert pdf.get_content_type() == "application/pdf"
    assert pdf.get_payload(decode=True) == PDF


async def test_awkward_content_survives_the_trip() -> None:
    text = ".\nA line with a lone dot above.\r\nTrailing space \n=_ not a boundary\n" + "x" * 300
    html = "<p>=3D is not an escape here</p>\n.\n"
    pdf = bytes(range(256)) * 40
    long_url = "https://notify.example/unsubscribe/" + "a" * 120
    handler = Recorder()
    with smtp_server(handler) as server:
        sender = sender_for(server)
        await sender.send(
            outgoing(
                text=text,
                html=html,
                attachments=[
                    Attachment('Inv "7".pdf', "application/pdf", pdf),
                    Attachment("notes.txt", "text/plain; bad", b"hello"),
                ],
                headers={
                    "List-Unsubscribe": f"<{long_url}>, <mailto:u@acme.example?subject=unsubscribe>"
                },
            )
        )
        await sender.aclose()
    raw = handler.received[0][2]
    long_lines = [line for line in raw.split(b"\r\n") if len(line) > 78]
    assert long_lines == [f"List-Unsubscribe: <{long_url}>,".encode()]  # nowhere to fold
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    plain = msg.get_body(preferencelist=("plain",))
    rich = msg.get_body(preferencelist=("html",))
    assert plain is not None
    assert rich is not None
    assert plain.get_content().replace("\r\n", "\n") == text.replace("\r\n", "\n")
    assert rich.get_content().replace("\r\n", "\n") == html
    first, second = msg.iter_attachments()
    assert first.get_filename() == 'Inv "7".pdf'
    assert first.get_payload(decode=True) == pdf
    assert second.get_content_type() == "application/octet-stream"  # not a valid type
    assert msg["List-Unsubscribe"] == f"<{long_url}>, <mailto:u@acme.example?subject=unsubscribe>"


async def test_text_only_message_is_single_part() -> None:
    sender = SmtpSender(host="127.0.0.1", port=25, from_addr="b@acme.example")
    raw = sender.build(outgoing(html=None, attachments=[], headers={}))
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert msg.get_content_type() == "text/plain"
    assert b"\r\n" in raw
    assert "List-Unsubscribe" not in msg


@pytest.mark.parametrize(
    "changes",
    [
        {"message_id": "msg-1@acme.example"},
        {"headers": {"Subject": "override"}},
        {"headers": {"X-Evil": "a\r\nBcc: victim@example.com"}},
        {"headers": {"X-Evil:\r\nBcc": "victim@example.com"}},
        {"subject": "Hi\nBcc: victim@example.com"},
        {"to": ["a@b.example\r\nBcc: victim@example.com"]},
    ],
)
def test_build_refuses_malformed_messages(changes: dict[str, Any]) -> None:
    sender = SmtpSender(host="127.0.0.1", port=25, from_addr="b@acme.example")
    with pytest.raises(ValueError):  # noqa: PT011 - each case has its own message
        sender.build(outgoing(**changes))


async def test_many_sends_reuse_pooled_connections() -> None:
    handler = Recorder()
    with smtp_server(handler) as server:
        sender = sender_for(server, pool_size=4)
        for n in range(30):
            await sender.send(outgoing(n))
        assert len(handler.peers) == 1
        results = await asyncio.gather(*(sender.send(outgoing(n)) for n in range(200)))
        await sender.aclose()
    assert all(r.response.startswith("250") for r in results)
    assert len(handler.received) == 230
    assert len(handler.peers) <= 4
    assert sender.connections_opened == len(handler.peers)


async def test_confirm_is_asked_with_the_envelope_open_and_a_no_sends_nothing() -> None:
    handler = Recorder()
    asked: list[int] = []

    async def no() -> str | None:
        asked.append(len(handler.sessions))  # MAIL FROM had arrived when it was asked
        return "INV-1 paid a moment ago"

    async def yes() -> str | None:
        return None

    with smtp_server(handler) as server:
        sender = sender_for(server)
        with pytest.raises(Withdrawn, match="paid a moment ago"):
            await sender.send(outgoing(1), confirm=no)
        assert handler.received == []
        result = await sender.send(outgoing(2), confirm=yes)
        await sender.aclose()
    assert asked == [1]
    assert result.response.startswith("250")
    assert [b"INV-2" in data for _, _, data in handler.received] == [True]
    # the envelope was reset, not the connection: the second message used the same one
    assert sender.connections_opened == 1
    assert len(handler.peers) == 1


async def test_connections_idle_too_long_are_not_reused() -> None:
    handler = Recorder()
    with smtp_server(handler) as server:
        sender = sender_for(server)
        sender.max_idle = 0.0
        for n in range(3):
            await sender.send(outgoing(n))
        await sender.aclose()
    assert sender.connections_opened == 3
    assert len(handler.received) == 3


async def test_refused_recipient_is_reported_and_others_get_it() -> None:
    handler = Recorder(refuse={"cfo@customer.example": "550 5.1.1 no such user"})
    with smtp_server(handler) as server:
        sender = sender_for(server)
        result = await sender.send(outgoing())
        assert result.accepted == ["billing@customer.example"]
        assert result.refused == {"cfo@customer.example": (550, "5.1.1 no such user")}
        assert handler.received[0][1] == ["billing@customer.example"]

        with pytest.raises(SendError) as info:
            await sender.send(outgoing(2, to=["cfo@customer.example"], cc=[]))
        assert info.value.permanent is True
        assert info.value.code == 550
        assert info.value.refused == {"cfo@customer.example": (550, "5.1.1 no such user")}

        # The failed transaction was reset: the same connection carries the next message.
        await sender.send(outgoing(3))
        await sender.aclose()
    assert len(handler.peers) == 1
    assert len(handler.received) == 2


@pytest.mark.parametrize(
    ("handler", "permanent", "code"),
    [
        (Recorder(refuse={"billing@customer.example": "451 4.7.1 greylisted"}), False, 451),
        (Recorder(mail_reply="451 4.3.0 try later"), False, 451),
        (Recorder(mail_reply="550 5.7.1 sender rejected"), True, 550),
        (Recorder(data_reply="452 4.3.1 insufficient storage"), False, 452),
        (Recorder(data_reply="554 5.6.0 message content rejected"), True, 554),
    ],
)
async def test_error_replies_say_whether_to_retry(
    handler: Recorder, permanent: bool, code: int
) -> None:
    with smtp_server(handler) as server:
        sender = sender_for(server)
        with pytest.raises(SendError) as info:
            await sender.send(outgoing(cc=[]))
        assert info.value.permanent is permanent
        assert info.value.code == code
        assert not info.value.uncertain
        await sender.aclose()


async def test_a_dropped_pooled_connection_is_replaced_once() -> None:
    handler = Recorder()
    with smtp_server(handler) as server:
        sender = sender_for(server)
        await sender.send(outgoing(1))
        handler.drop_at_mail = 1  # the server closes the pooled connection at the next MAIL
        result = await sender.send(outgoing(2))
        assert result.response == "250 OK queued as Q2"
        assert sender.connections_opened == 2

        handler.drop_at_mail = 2  # the fresh connection fails too: give up, transiently
        with pytest.raises(SendError) as info:
            await sender.send(outgoing(3))
        assert info.value.permanent is False
        await sender.aclose()
    assert [r[2].count(b"Message-ID") for r in handler.received] == [1, 1]


async def test_a_421_per_connection_limit_is_a_reconnect() -> None:
    handler = Recorder(per_connection=3)
    with smtp_server(handler) as server:
        sender = sender_for(server)
        for n in range(7):
            await sender.send(outgoing(n))
        await sender.aclose()
    assert len(handler.received) == 7
    assert sender.connections_opened == 3


async def test_non_ascii_mailbox_is_refused_before_connecting() -> None:
    sender = SmtpSender.from_url(f"smtp://127.0.0.1:{free_port()}", from_addr="b@acme.example")
    with pytest.raises(SendError, match="non-ASCII") as info:
        await sender.send(outgoing(to=["jürgen@müller.example"], cc=[]))
    assert info.value.permanent is True


def test_non_ascii_names_are_encoded() -> None:
    raw = build_message(
        outgoing(
            from_addr="Müller & Söhne GmbH <ar@mueller.example>",
            attachments=[Attachment("Rechnung März.pdf", "application/pdf", PDF)],
        )
    )
    assert raw.isascii()
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert msg["From"].addresses[0].display_name == "Müller & Söhne GmbH"
    assert msg["From"].addresses[0].addr_spec == "ar@mueller.example"
    [pdf] = list(msg.iter_attachments())
    assert pdf.get_filename() == "Rechnung März.pdf"
    assert all(len(line) <= 998 for line in raw.split(b"\r\n"))


async def test_a_cancelled_send_does_not_pool_its_connection() -> None:
    handler = Recorder(data_delay=0.5)
    with smtp_server(handler) as server:
        sender = sender_for(server)
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(sender.send(outgoing(1)), timeout=0.1)
        handler.data_delay = 0.0
        result = await sender.send(outgoing(2))  # not on the connection awaiting a reply
        await sender.aclose()
    assert result.response.endswith(f"Q{len(handler.received)}")
    assert sender.connections_opened == 2


async def test_a_connection_lost_during_data_is_uncertain() -> None:
    handler = Recorder(drop_at_data=True)
    with smtp_server(handler) as server:
        sender = sender_for(server)
        with pytest.raises(SendError) as info:
            await sender.send(outgoing())
        await sender.aclose()
    assert info.value.uncertain is True
    assert info.value.permanent is False


async def test_unreachable_server_is_transient() -> None:
    sender = SmtpSender.from_url(f"smtp://127.0.0.1:{free_port()}", from_addr="b@acme.example")
    with pytest.raises(SendError) as info:
        await sender.send(outgoing())
    assert info.value.permanent is False


# TLS and authentication


def _local_address() -> str | None:
    """This host's address on its default route (not loopback), if it has one."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # no packet is sent for a UDP connect
        except OSError:
            return None
        addr: str = probe.getsockname()[0]
    return None if addr.startswith("127.") else addr


LOCAL_ADDRESS = _local_address()


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for localhost, 127.0.0.1 and this host's address (openssl)."""
    san = "DNS:localhost,IP:127.0.0.1" + (f",IP:{LOCAL_ADDRESS}" if LOCAL_ADDRESS else "")
    base = tmp_path_factory.mktemp("tls")
    cert, key = base / "cert.pem", base / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
            "-addext",
            f"subjectAltName={san}",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


def server_tls(certificate: tuple[Path, Path]) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(*certificate)
    return ctx


def client_tls(certificate: tuple[Path, Path]) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(certificate[0]))


class Authenticator:
    def __init__(self) -> None:
        self.mechanisms: list[str] = []

    def __call__(
        self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
    ) -> AuthResult:
        self.mechanisms.append(mechanism)
        ok = isinstance(auth_data, LoginPassword) and auth_data == (
            b"ar@acme.example",
            b"p\xc3\xa4ss",
        )
        return AuthResult(success=ok, handled=False)


@pytest.mark.parametrize("mechanism", ["LOGIN", "PLAIN"])
async def test_starttls_and_auth(certificate: tuple[Path, Path], mechanism: str) -> None:
    handler, auth = Recorder(), Authenticator()
    other = {"LOGIN": "PLAIN", "PLAIN": "LOGIN"}[mechanism]
    with smtp_server(
        handler,
        tls_context=server_tls(certificate),
        require_starttls=True,
        auth_required=True,
        authenticator=auth,
        auth_exclude_mechanism=[other],
    ) as server:
        base = f"smtp://ar%40acme.example:p%C3%A4ss@127.0.0.1:{server.port}"
        sender = SmtpSender.from_url(
            f"{base}?starttls=true", from_addr="b@acme.example", tls_context=client_tls(certificate)
        )
        await sender.send(outgoing(1))
        await sender.send(outgoing(2))
        await sender.aclose()

        wrong = SmtpSender.from_url(
            f"smtp://ar%40acme.example:nope@127.0.0.1:{server.port}?starttls=true",
            from_addr="b@acme.example",
            tls_context=client_tls(certificate),
        )
        with pytest.raises(SendError) as info:
            await wrong.send(outgoing(3))
        assert info.value.permanent is False
        assert info.value.code == 535

        untrusted = SmtpSender.from_url(f"{base}?starttls=true", from_addr="b@acme.example")
        with pytest.raises(SendError, match="cannot open"):
            await untrusted.send(outgoing(4))
    assert auth.mechanisms[:2] == [mechanism, mechanism]
    assert len(handler.received) == 2
    assert handler.tls == [True, True]
    assert all(s.authenticated for s in handler.sessions)


async def test_verify_false_accepts_a_self_signed_relay(certificate: tuple[Path, Path]) -> None:
    handler = Recorder()
    with smtp_server(handler, tls_context=server_tls(certificate), require_starttls=True) as server:
        sender = SmtpSender.from_url(
            f"smtp://127.0.0.1:{server.port}?starttls=true&verify=false",
            from_addr="b@acme.example",
        )
        await sender.send(outgoing())
        await sender.aclose()
    assert handler.tls == [True]


needs_local_address = pytest.mark.skipif(
    LOCAL_ADDRESS is None, reason="no non-loopback address to listen on"
)


@needs_local_address
async def test_opportunistic_starttls_away_from_loopback(certificate: tuple[Path, Path]) -> None:
    assert LOCAL_ADDRESS is not None
    handler = Recorder()
    with smtp_server(handler, LOCAL_ADDRESS, tls_context=server_tls(certificate)) as server:
        sender = SmtpSender.from_url(
            f"smtp://{LOCAL_ADDRESS}:{server.port}",
            from_addr="b@acme.example",
            tls_context=client_tls(certificate),
        )
        await sender.send(outgoing())
        await sender.aclose()
    assert handler.tls == [True]  # offered, so used, without being asked


@needs_local_address
async def test_no_credentials_in_clear_text_away_from_loopback() -> None:
    assert LOCAL_ADDRESS is not None
    handler = Recorder()
    with smtp_server(handler, LOCAL_ADDRESS, auth_require_tls=False) as server:
        sender = SmtpSender.from_url(
            f"smtp://user:secret@{LOCAL_ADDRESS}:{server.port}", from_addr="b@acme.example"
        )
        with pytest.raises(SendError, match="clear text") as info:
            await sender.send(outgoing())
    assert info.value.permanent is False
    assert handler.received == []


async def test_starttls_required_but_not_offered() -> None:
    with smtp_server(Recorder()) as server:
        sender = SmtpSender.from_url(
            f"smtp://127.0.0.1:{server.port}?starttls=true", from_addr="b@acme.example"
        )
        with pytest.raises(SendError, match="does not offer STARTTLS") as info:
            await sender.send(outgoing())
    assert info.value.permanent is False


async def test_implicit_tls(certificate: tuple[Path, Path]) -> None:
    handler = Recorder()
    with smtp_server(handler, ssl_context=server_tls(certificate)) as server:
        sender = SmtpSender.from_url(
            f"smtps://localhost:{server.port}",
            from_addr="b@acme.example",
            tls_context=client_tls(certificate),
        )
        await sender.send(outgoing())
        await sender.aclose()
    assert handler.tls == [True]


def test_from_url() -> None:
    assert SmtpSender.from_url("smtps://mail.example", from_addr="b@x.example")._cfg.port == 465
    plain = SmtpSender.from_url("smtp://mail.example", from_addr="b@x.example")._cfg
    assert (plain.port, plain.starttls) == (25, None)  # opportunistic
    local = SmtpSender.from_url("smtp://localhost:1025", from_addr="b@x.example")._cfg
    assert local.starttls is False  # loopback: never upgraded unless asked
    off = SmtpSender.from_url("smtp://mail.example:587?starttls=false", from_addr="b@x.example")
    assert off._cfg.starttls is False
    with pytest.raises(ValueError, match="scheme"):
        SmtpSender.from_url("http://mail.example", from_addr="b@x.example")
    with pytest.raises(ValueError, match="contradicts"):
        SmtpSender.from_url("smtps://mail.example?starttls=true", from_addr="b@x.example")
    with pytest.raises(ValueError, match="not true or false"):
        SmtpSender.from_url("smtp://mail.example?starttls=maybe", from_addr="b@x.example")


# Delivery status notifications

POSTFIX_BOUNCE = b"""\
Return-Path: <>
Date: Mon, 23 Nov 2026 14:00:05 +0000 (UTC)
From: MAILER-DAEMON@mx.customer.example (Mail Delivery System)
Subject: Undelivered Mail Returned to Sender
To: bounces@acme.example
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status;
\tboundary="8E1F61C0A2.1763906405/mx.customer.example"
Message-Id: <20261123140005.8E1F61C0A2@mx.customer.example>

This is a MIME-encapsulated message.

--8E1F61C0A2.1763906405/mx.customer.example
Content-Description: Notification
Content-Type: text/plain; charset=us-ascii

This is the mail system at host mx.customer.example.

I'm sorry to have to inform you that your message could not
be delivered to one or more recipients.

<nobody@customer.example>: host mx.customer.example[192.0.2.10] said: 550 5.1.1
    <nobody@customer.example>: Recipient address rejected: User unknown in
    local recipient table (in reply to RCPT TO command)

--8E1F61C0A2.1763906405/mx.customer.example
Content-Description: Delivery report
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.customer.example
X-Postfix-Queue-ID: 8E1F61C0A2
X-Postfix-Sender: rfc822; bounces@acme.example
Arrival-Date: Mon, 23 Nov 2026 14:00:04 +0000 (UTC)

Final-Recipient: rfc822; nobody@customer.example
Original-Recipient: rfc822;nobody@customer.example
Action: failed
Status: 5.1.1
Remote-MTA: dns; mx.customer.example
Diagnostic-Code: smtp; 550 5.1.1 <nobody@customer.example>: Recipient address
    rejected: User unknown in local recipient table

Final-Recipient: rfc822; slow@customer.example
Action: delayed
Status: 4.4.1
Diagnostic-Code: smtp; 421 4.4.1 connection timed out

--8E1F61C0A2.1763906405/mx.customer.example
Content-Description: Undelivered Message Headers
Content-Type: text/rfc822-headers

Return-Path: <bounces@acme.example>
Message-ID: <msg-7@notify.duewise.example>
From: Acme Receivables <ar@acme.example>
To: nobody@customer.example
Subject: Invoice INV-7

--8E1F61C0A2.1763906405/mx.customer.example--
"""


def test_parse_postfix_dsn() -> None:
    failed, delayed = parse_dsn(POSTFIX_BOUNCE)
    assert failed.recipient == "nobody@customer.example"
    assert failed.action == "failed"
    assert failed.status == "5.1.1"
    assert failed.diagnostic is not None
    assert failed.diagnostic.startswith("smtp; 550 5.1.1 <nobody@customer.example>")
    assert "User unknown in local recipient table" in failed.diagnostic
    assert failed.original_message_id == "<msg-7@notify.duewise.example>"
    assert failed.permanent
    assert delayed.action == "delayed"
    assert not delayed.permanent


def test_parse_dsn_with_the_whole_returned_message() -> None:
    returned = SmtpSender(host="x", port=25, from_addr="b@acme.example").build(outgoing(9))
    report = (
        b"From: postmaster@mx.example\r\n"
        b"Subject: Delivery Status Notification (Failure)\r\n"
        b"MIME-Version: 1.0\r\n"
        b'Content-Type: multipart/report; report-type=delivery-status; boundary="b1"\r\n'
        b"\r\n--b1\r\nContent-Type: text/plain\r\n\r\nYour message was not delivered.\r\n"
        b"--b1\r\nContent-Type: message/delivery-status\r\n\r\n"
        b"Reporting-MTA: dns; mx.example\r\n\r\n"
        b"Final-Recipient: rfc822; gone@customer.example\r\n"
        b"Action: failed\r\nStatus: 5.2.1 (mailbox disabled)\r\n\r\n"
        b"--b1\r\nContent-Type: message/rfc822\r\n\r\n" + returned + b"\r\n--b1--\r\n"
    )
    [bounce] = parse_dsn(report)
    assert bounce.recipient == "gone@customer.example"
    assert bounce.status == "5.2.1"
    assert bounce.diagnostic is None
    assert bounce.original_message_id == "<msg-9@notify.duewise.example>"


def test_not_a_dsn() -> None:
    reply = b"From: cfo@customer.example\r\nSubject: Re: INV-1\r\n\r\nPaid yesterday.\r\n"
    assert parse_dsn(reply) == []
