"""A local mail and SMS catcher for `make run` when SMTP_URL is unset.

`python -m duewise_dev.catcher --smtp-port 1025 --http-port 8025` starts, in one event loop:

- an SMTP server (aiosmtpd) keeping the last messages in memory; it accepts any AUTH and
  refuses every recipient at `undeliverable.example` with "550 5.1.1 mailbox unavailable", so
  a bounce can be seen without a real mail system;
- an HTTP server: a Twilio-shaped SMS endpoint
  (`POST /2010-04-01/Accounts/{sid}/Messages.json`), a JSON API over what was caught
  (`/api/messages`, `/api/sms`), `/healthz`, and a plain HTML index at `/`.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import email.utils
import functools
import html
import itertools
import re
import secrets
import socket
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage, MIMEPart
from typing import Annotated, Any
from urllib.parse import parse_qs

import typer
import uvicorn
from aiosmtpd.smtp import SMTP, AuthResult
from fastapi import FastAPI, HTTPException, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse

from duewise_dev._util import LOCALHOST

UNDELIVERABLE_DOMAIN = "undeliverable.example"
_E164 = re.compile(r"^\+[1-9]\d{1,14}$")


@dataclass
class CaughtMail:
    id: int
    received: datetime
    mail_from: str
    rcpt_tos: list[str]
    raw: bytes

    @functools.cached_property
    def message(self) -> EmailMessage:
        # Parsed when first looked at: parsing on receipt would halve the SMTP throughput.
        parsed = email.message_from_bytes(self.raw, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        return parsed

    def attachments(self) -> list[EmailMessage]:
        return list(self.message.iter_attachments())

    def summary(self) -> dict[str, Any]:
        msg = self.message
        return {
            "id": self.id,
            "received": self.received.isoformat(),
            "from": str(msg.get("From", "")),
            "to": [str(addr) for addr in getattr(msg.get("To"), "addresses", ())],
            "recipients": self.rcpt_tos,
            "mail_from": self.mail_from,
            "subject": str(msg.get("Subject", "")),
            "date": str(msg.get("Date", "")),
            "message_id": str(msg.get("Message-ID", "")),
            "attachments": [part.get_filename() or "" for part in self.attachments()],
        }

    def detail(self) -> dict[str, Any]:
        text = self.message.get_body(preferencelist=("plain",))
        body_html = self.message.get_body(preferencelist=("html",))
        return {
            **self.summary(),
            "text": _content(text),
            "html": _content(body_html),
            "headers": [[name, str(value)] for name, value in self.message.items()],
            "attachments": [
                {
                    "index": n,
                    "filename": part.get_filename() or "",
                    "content_type": part.get_content_type(),
                    "size": len(part.get_payload(decode=True) or b""),
                }
                for n, part in enumerate(self.attachments())
            ],
        }


def _content(part: MIMEPart | None) -> str | None:
    """A text part's content, even in a charset Python does not know."""
    if part is None:
        return None
    try:
        content = part.get_content()
        return content if isinstance(content, str) else None
    except (LookupError, ValueError):
        raw = part.get_payload(decode=True)
        return raw.decode("utf-8", "replace") if isinstance(raw, bytes) else None


@dataclass
class CaughtSms:
    sid: str
    account_sid: str
    to: str
    from_: str
    body: str
    received: datetime
    idempotency_key: str | None

    def twilio(self) -> dict[str, Any]:
        return {
            "sid": self.sid,
            "account_sid": self.account_sid,
            "to": self.to,
            "from": self.from_,
            "body": self.body,
            "status": "queued",
            "direction": "outbound-api",
            "num_segments": "1",
            "api_version": "2010-04-01",
            "date_created": email.utils.format_datetime(self.received),
            "uri": f"/2010-04-01/Accounts/{self.account_sid}/Messages/{self.sid}.json",
        }


class CatcherStore:
    """What was caught, newest last, bounded: the oldest is forgotten past `capacity`."""

    def __init__(self, capacity: int = 5000) -> None:
        self.mails: deque[CaughtMail] = deque(maxlen=capacity)
        self.sms: deque[CaughtSms] = deque(maxlen=capacity)
        self._ids = itertools.count(1)

    def add_mail(self, mail_from: str, rcpt_tos: list[str], raw: bytes) -> CaughtMail:
        mail = CaughtMail(next(self._ids), datetime.now(UTC), mail_from, rcpt_tos, raw)
        self.mails.append(mail)
        return mail

    def mail(self, mail_id: int) -> CaughtMail:
        for mail in self.mails:
            if mail.id == mail_id:
                return mail
        raise HTTPException(404, f"no message {mail_id}")


class SmtpHandler:
    """aiosmtpd hooks: refuse the undeliverable domain, keep everything else."""

    def __init__(self, store: CatcherStore) -> None:
        self.store = store

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        if address.rpartition("@")[2].lower() == UNDELIVERABLE_DOMAIN:
            return "550 5.1.1 mailbox unavailable"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        content = envelope.original_content or envelope.content or b""
        raw = content if isinstance(content, bytes) else content.encode("utf-8")
        mail = self.store.add_mail(envelope.mail_from or "", list(envelope.rcpt_tos), raw)
        return f"250 OK queued as {mail.id}"


def _accept_any_login(*_args: Any) -> AuthResult:
    return AuthResult(success=True)


def _twilio_error(status: int, code: int, message: str) -> JSONResponse:
    body = {
        "code": code,
        "message": message,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }
    return JSONResponse(body, status_code=status)


def create_app(store: CatcherStore) -> FastAPI:
    app = FastAPI(title="duewise catcher", docs_url=None, redoc_url=None)

    @app.post("/2010-04-01/Accounts/{account_sid}/Messages.json")
    async def send_sms(account_sid: str, request: Request) -> Response:
        auth = request.headers.get("authorization", "")
        if not auth.lower().startswith("basic "):
            return _twilio_error(401, 20003, "Authenticate")
        key = request.headers.get("idempotency-key")
        if key:
            for old in store.sms:
                if old.idempotency_key == key and old.account_sid == account_sid:
                    return JSONResponse(old.twilio(), status_code=201)
        form = {k: v[-1] for k, v in parse_qs((await request.body()).decode()).items()}
        to, from_, body = form.get("To", ""), form.get("From", ""), form.get("Body", "")
        if not _E164.match(to):
            return _twilio_error(400, 21211, f"The 'To' number {to} is not a valid phone number.")
        if not from_:
            return _twilio_error(400, 21603, "A 'From' phone number is required.")
        if not body:
            return _twilio_error(400, 21602, "Message body is required.")
        sms = CaughtSms(
            sid="SM" + secrets.token_hex(16),
            account_sid=account_sid,
            to=to,
            from_=from_,
            body=body,
            received=datetime.now(UTC),
            idempotency_key=key,
        )
        store.sms.append(sms)
        return JSONResponse(sms.twilio(), status_code=201)

    @app.get("/api/messages")
    async def list_messages() -> list[dict[str, Any]]:
        return [mail.summary() for mail in reversed(store.mails)]

    @app.get("/api/messages/{mail_id}")
    async def get_message(mail_id: int) -> dict[str, Any]:
        return store.mail(mail_id).detail()

    @app.get("/api/messages/{mail_id}/raw")
    async def get_raw(mail_id: int) -> Response:
        return Response(store.mail(mail_id).raw, media_type="message/rfc822")

    @app.get("/api/messages/{mail_id}/attachments/{n}")
    async def get_attachment(mail_id: int, n: int) -> Response:
        parts = store.mail(mail_id).attachments()
        if not 0 <= n < len(parts):
            raise HTTPException(404, f"message {mail_id} has no attachment {n}")
        part = parts[n]
        filename = (part.get_filename() or f"attachment-{n}").replace('"', "")
        return Response(
            part.get_payload(decode=True) or b"",
            media_type=part.get_content_type(),
            headers={"content-disposition": f'attachment; filename="{filename}"'},
        )

    @app.delete("/api/messages", status_code=204)
    async def clear_messages() -> None:
        store.mails.clear()

    @app.get("/api/sms")
    async def list_sms() -> list[dict[str, Any]]:
        return [sms.twilio() for sms in reversed(store.sms)]

    @app.delete("/api/sms", status_code=204)
    async def clear_sms() -> None:
        store.sms.clear()

    @app.get("/healthz")
    async def healthz() -> dict[str, Any]:
        return {"status": "ok", "messages": len(store.mails), "sms": len(store.sms)}

    @app.get("/", response_class=HTMLResponse)
    async def index() -> str:
        return _index_html(store)

    return app


def _attachment_links(summary: dict[str, Any]) -> str:
    return " ".join(
        f"<a href='/api/messages/{summary['id']}/attachments/{n}'>{html.escape(name)}</a>"
        for n, name in enumerate(summary["attachments"])
    )


def _index_html(store: CatcherStore) -> str:
    e = html.escape
    mail_rows = "".join(
        f"<tr><td>{e(s['received'][:19])}</td><td>{e(s['from'])}</td>"
        f"<td>{e(', '.join(s['recipients']))}</td>"
        f"<td><a href='/api/messages/{s['id']}'>{e(s['subject']) or '(no subject)'}</a></td>"
        f"<td>{_attachment_links(s)}</td></tr>"
        for s in (mail.summary() for mail in reversed(store.mails))
    )
    sms_rows = "".join(
        f"<tr><td>{e(sms.received.isoformat()[:19])}</td><td>{e(sms.from_)}</td>"
        f"<td>{e(sms.to)}</td><td>{e(sms.body)}</td></tr>"
        for sms in reversed(store.sms)
    )
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>duewise catcher</title>"
        "<style>body{font-family:sans-serif}td,th{padding:2px 8px;text-align:left}</style>"
        "</head><body><h1>duewise catcher</h1>"
        f"<h2>Mail ({len(store.mails)})</h2><table><tr><th>Received (UTC)</th><th>From</th>"
        f"<th>To</th><th>Subject</th><th>Attachments</th></tr>{mail_rows}</table>"
        f"<h2>SMS ({len(store.sms)})</h2><table><tr><th>Received (UTC)</th><th>From</th>"
        f"<th>To</th><th>Body</th></tr>{sms_rows}</table></body></html>"
    )


class Catcher:
    """Both servers in the running event loop; a port of 0 picks a free one."""

    def __init__(
        self,
        *,
        smtp_port: int = 1025,
        http_port: int = 8025,
        host: str = LOCALHOST,
        capacity: int = 5000,
    ) -> None:
        self.host = host
        self.smtp_port = smtp_port
        self.http_port = http_port
        self.store = CatcherStore(capacity)
        self._smtp: asyncio.Server | None = None
        self._http: uvicorn.Server | None = None
        self._http_task: asyncio.Task[None] | None = None

    @property
    def smtp_url(self) -> str:
        return f"smtp://{self.host}:{self.smtp_port}"

    @property
    def http_url(self) -> str:
        return f"http://{self.host}:{self.http_port}"

    async def start(self) -> None:
        handler = SmtpHandler(self.store)
        self._smtp = await asyncio.get_running_loop().create_server(
            lambda: SMTP(
                handler,
                hostname="duewise-catcher",
                enable_SMTPUTF8=True,
                authenticator=_accept_any_login,
                auth_require_tls=False,
            ),
            self.host,
            self.smtp_port,
        )
        self.smtp_port = self._smtp.sockets[0].getsockname()[1]
        # Bind the HTTP socket here: uvicorn exits the process when it cannot bind.
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.host, self.http_port))
        except OSError:
            sock.close()
            await self.stop()
            raise
        self.http_port = sock.getsockname()[1]
        config = uvicorn.Config(
            create_app(self.store), log_level="warning", lifespan="off", access_log=False
        )
        self._http = uvicorn.Server(config)
        self._http_task = asyncio.create_task(self._http.serve(sockets=[sock]))
        while not self._http.started:
            if self._http_task.done():
                await self._http_task  # surfaces its exception
                raise RuntimeError("catcher HTTP server stopped while starting")
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        if self._http is not None and self._http_task is not None:
            self._http.should_exit = True
            await self._http_task
            self._http = self._http_task = None
        if self._smtp is not None:
            self._smtp.close()
            await self._smtp.wait_closed()
            self._smtp = None

    async def serve_forever(self) -> None:
        """Until the HTTP server is told to stop (uvicorn handles Ctrl-C and SIGTERM)."""
        await self.start()
        print(
            f"catcher: SMTP on {self.host}:{self.smtp_port}, HTTP on {self.http_url}/",
            flush=True,
        )
        try:
            assert self._http_task is not None
            await asyncio.shield(self._http_task)
        finally:
            await self.stop()


def main(
    smtp_port: Annotated[int, typer.Option(help="SMTP port.")] = 1025,
    http_port: Annotated[int, typer.Option(help="HTTP port (UI, API, Twilio-shaped SMS).")] = 8025,
    host: Annotated[str, typer.Option(help="Address both servers listen on.")] = LOCALHOST,
    capacity: Annotated[int, typer.Option(help="Messages kept (each kind).")] = 5000,
) -> None:
    """Catch mail over SMTP and SMS over a Twilio-shaped API; browse them over HTTP."""
    catcher = Catcher(smtp_port=smtp_port, http_port=http_port, host=host, capacity=capacity)
    try:
        import uvloop  # comes with uvicorn[standard]: a faster catcher, a higher bench ceiling
    except ImportError:  # pragma: no cover - Windows
        asyncio.run(catcher.serve_forever())
    else:
        uvloop.run(catcher.serve_forever())


if __name__ == "__main__":  # pragma: no cover - `python -m duewise_dev.catcher`
    typer.run(main)
