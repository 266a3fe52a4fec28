"""The SMTP sender: a small pool of reused connections, and what each reply means.

`SmtpSender.from_url` reads `SMTP_URL`. Transport security, by URL:

- `smtps://host[:465]` — implicit TLS from the first byte.
- `smtp://host[:25]?starttls=true` — STARTTLS is required; a server that does not offer it
  fails the send (transient: it is a configuration problem, not the recipient's).
- `smtp://host?starttls=false` — plain text, never upgraded.
- `smtp://host` (no `starttls`) — opportunistic: upgrade when the server offers STARTTLS,
  unless the host is a loopback address (`localhost`, 127.0.0.0/8, ::1), where a local
  catcher or relay sidecar listens and a certificate could not verify anyway.
- `?verify=false` turns off certificate verification (a self-signed development relay).

Credentials (`smtp://user:pass@host`) are sent with AUTH after any upgrade, and never in
clear text to a host that is not loopback: that send fails instead (transient).
"""

from __future__ import annotations

import asyncio
import ipaddress
import ssl
from dataclasses import dataclass
from urllib.parse import parse_qs, unquote, urlsplit

from aiosmtplib import (
    SMTP,
    SMTPAuthenticationError,
    SMTPException,
    SMTPRecipientRefused,
    SMTPResponseException,
    SMTPServerDisconnected,
    SMTPTimeoutError,
)

from notify.channels.message import Confirm, OutgoingEmail, SendError, SendResult, Withdrawn
from notify.channels.mime import build_message

__all__ = ["SmtpSender"]

_CLOSING = 421


class _Dropped(SendError):
    """The connection was gone before the message data was sent: safe to retry."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail, permanent=False)


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _flag(query: dict[str, list[str]], name: str) -> bool | None:
    if name not in query:
        return None
    value = query[name][-1].lower()
    if value in ("true", "1", "yes", "on"):
        return True
    if value in ("false", "0", "no", "off"):
        return False
    raise ValueError(f"SMTP URL: {name}={value!r} is not true or false")


@dataclass
class _Config:
    host: str
    port: int
    implicit_tls: bool
    starttls: bool | None  # True required, False never, None opportunistic
    username: str | None
    password: str | None
    tls_context: ssl.SSLContext | None
    timeout: float


class SmtpSender:
    """Sends OutgoingEmail over a small pool of reused SMTP connections."""

    def __init__(
        self,
        *,
        host: str,
        port: int,
        from_addr: str,
        username: str | None = None,
        password: str | None = None,
        implicit_tls: bool = False,
        starttls: bool | None = None,
        tls_context: ssl.SSLContext | None = None,
        pool_size: int = 4,
        timeout: float = 10.0,
        max_idle: float = 60.0,
    ) -> None:
        if implicit_tls and starttls:
            raise ValueError("implicit TLS and STARTTLS exclude each other")
        if starttls is None and (implicit_tls or _is_loopback(host)):
            starttls = False
        self.from_addr = from_addr  # the envelope sender (MAIL FROM): where DSNs return
        self.pool_size = pool_size
        self.connections_opened = 0
        self._cfg = _Config(
            host, port, implicit_tls, starttls, username, password, tls_context, timeout
        )
        self.max_idle = max_idle
        self._idle: list[tuple[SMTP, float]] = []  # with the loop time it was last used
        self._slots = asyncio.Semaphore(pool_size)
        self._closed = False

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        from_addr: str,
        pool_size: int = 4,
        timeout: float = 10.0,
        tls_context: ssl.SSLContext | None = None,
    ) -> SmtpSender:
        """A sender for smtp://[user:pass@]host[:port][?starttls=..&verify=..] or smtps://."""
        parts = urlsplit(url)
        if parts.scheme not in ("smtp", "smtps"):
            raise ValueError(f"SMTP URL: scheme {parts.scheme!r} is not smtp or smtps")
        if not parts.hostname:
            raise ValueError("SMTP URL: no host")
        query = parse_qs(parts.query)
        implicit = parts.scheme == "smtps"
        starttls = _flag(query, "starttls")
        if implicit and starttls:
            raise ValueError("SMTP URL: smtps:// is implicit TLS; starttls=true contradicts it")
        if _flag(query, "verify") is False and tls_context is None:
            tls_context = ssl.create_default_context()
            tls_context.check_hostname = False
            tls_context.verify_mode = ssl.CERT_NONE
        return cls(
            host=parts.hostname,
            port=parts.port or (465 if implicit else 25),
            from_addr=from_addr,
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            implicit_tls=implicit,
            starttls=starttls,
            tls_context=tls_context,
            pool_size=pool_size,
            timeout=timeout,
        )

    def build(self, mail: OutgoingEmail) -> bytes:
        """The message as sent: text and HTML alternatives, attachments, ids and headers."""
        return build_message(mail)

    async def send(self, mail: OutgoingEmail, *, confirm: Confirm | None = None) -> SendResult:
        """One delivery attempt. Raises SendError when no recipient accepted the message.

        `confirm` is awaited once the envelope is accepted and before the message data goes
        out; a reason from it resets the envelope and raises Withdrawn (nothing was sent).
        Asking there, not before the connection is taken, leaves only the data transfer
        between the caller's last check and the message leaving."""
        if self._closed:
            raise RuntimeError("SmtpSender is closed")
        recipients = mail.recipients
        if not recipients:
            raise ValueError(f"{mail.message_id} has no recipients")
        if not all(addr.isascii() for addr in [self.from_addr, *recipients]):
            # SMTPUTF8 is not negotiated; an internationalised mailbox cannot be sent to.
            raise SendError(f"non-ASCII address in {recipients}", permanent=True)
        message = self.build(mail)
        async with self._slots:
            smtp, reused = await self._checkout()
            try:
                try:
                    result = await self._transaction(smtp, recipients, message, confirm)
                except _Dropped:
                    if not reused:
                        raise
                    # A pooled connection the server had closed (idle timeout, a 421 after
                    # its per-connection limit): one fresh try on a new connection.
                    smtp.close()
                    smtp = await self._open()
                    result = await self._transaction(smtp, recipients, message, confirm)
            except (SendError, Withdrawn):
                self._checkin(smtp)  # reset or closed already: safe to pool
                raise
            except BaseException:
                smtp.close()  # cancelled or failed mid-command: the session state is unknown
                raise
            self._checkin(smtp)
            return result

    async def aclose(self) -> None:
        """QUIT every idle connection; the sender cannot be used afterwards."""
        self._closed = True
        idle, self._idle = self._idle, []
        for smtp, _ in idle:
            try:
                await asyncio.wait_for(smtp.quit(), timeout=self._cfg.timeout)
            except (SMTPException, OSError, TimeoutError):
                smtp.close()

    async def _checkout(self) -> tuple[SMTP, bool]:
        now = asyncio.get_running_loop().time()
        while self._idle:
            smtp, last_used = self._idle.pop()
            # A connection idle for long may have been dropped silently (a NAT or firewall
            # forgetting it): the next command would hang until the timeout. Start afresh.
            if smtp.is_connected and now - last_used < self.max_idle:
                return smtp, True
            smtp.close()
        return await self._open(), False

    def _checkin(self, smtp: SMTP) -> None:
        if smtp.is_connected and not self._closed and len(self._idle) < self.pool_size:
            self._idle.append((smtp, asyncio.get_running_loop().time()))
        else:
            smtp.close()

    async def _open(self) -> SMTP:
        cfg = self._cfg
        smtp = SMTP(
            hostname=cfg.host,
            port=cfg.port,
            timeout=cfg.timeout,
            use_tls=cfg.implicit_tls,
            start_tls=False,
            tls_context=cfg.tls_context,
        )
        where = f"{cfg.host}:{cfg.port}"
        try:
            await smtp.connect()
            await smtp.ehlo()
            if cfg.starttls or (cfg.starttls is None and smtp.supports_extension("starttls")):
                if not smtp.supports_extension("starttls"):
                    raise SendError(f"{where} does not offer STARTTLS", permanent=False)
                await smtp.starttls()
            if cfg.username is not None:
                secure = smtp.get_transport_info("sslcontext") is not None
                if not secure and not _is_loopback(cfg.host):
                    raise SendError(
                        f"refusing to send SMTP credentials in clear text to {where}",
                        permanent=False,
                    )
                await smtp.login(cfg.username, cfg.password or "")
        except SMTPAuthenticationError as exc:
            smtp.close()
            raise SendError(
                f"{where} refused authentication: {exc.code} {exc.message}",
                permanent=False,
                code=exc.code,
            ) from exc
        except SendError:
            smtp.close()
            raise
        except (SMTPException, OSError, ssl.SSLError) as exc:
            smtp.close()
            code = exc.code if isinstance(exc, SMTPResponseException) else None
            raise SendError(
                f"cannot open an SMTP session with {where}: {exc}", permanent=False, code=code
            ) from exc
        self.connections_opened += 1
        return smtp

    async def _rset(self, smtp: SMTP) -> None:
        """Reset the envelope after a failed transaction; drop the connection if that fails."""
        try:
            await smtp.rset()
        except (SMTPException, OSError):
            smtp.close()

    async def _transaction(
        self, smtp: SMTP, recipients: list[str], message: bytes, confirm: Confirm | None
    ) -> SendResult:
        options = [f"SIZE={len(message)}"] if smtp.supports_extension("size") else []
        try:
            await smtp.mail(self.from_addr, options=options)
            refused: dict[str, tuple[int, str]] = {}
            for rcpt in recipients:
                try:
                    await smtp.rcpt(rcpt)
                except SMTPRecipientRefused as exc:
                    if exc.code == _CLOSING:
                        raise _Dropped(f"{exc.code} {exc.message}") from exc
                    refused[rcpt] = (exc.code, exc.message)
        except (SMTPServerDisconnected, ConnectionError) as exc:
            raise _Dropped(f"connection lost before the message data: {exc}") from exc
        except SMTPTimeoutError as exc:
            raise SendError(f"timed out in the envelope: {exc}", permanent=False) from exc
        except SMTPResponseException as exc:
            if exc.code == _CLOSING:  # "421 service closing": the session is over
                raise _Dropped(f"{exc.code} {exc.message}") from exc
            await self._rset(smtp)
            raise SendError(
                f"MAIL FROM refused: {exc.code} {exc.message}",
                permanent=exc.code >= 500,
                code=exc.code,
            ) from exc
        if len(refused) == len(recipients):
            await self._rset(smtp)
            codes = [code for code, _ in refused.values()]
            summary = "; ".join(f"{r}: {c} {m}" for r, (c, m) in refused.items())
            raise SendError(
                f"every recipient refused: {summary}",
                permanent=all(code >= 500 for code in codes),
                code=codes[0],
                refused=refused,
            )
        if confirm is not None:
            try:
                reason = await confirm()
            except BaseException:
                await self._rset(smtp)
                raise
            if reason is not None:
                await self._rset(smtp)
                raise Withdrawn(reason)
        if not smtp.is_connected:
            raise _Dropped("connection lost before the message data")
        try:
            response = await smtp.data(message)
        except (SMTPServerDisconnected, SMTPTimeoutError, ConnectionError) as exc:
            raise SendError(
                f"connection lost during the message data, delivery unknown: {exc}",
                permanent=False,
                uncertain=True,
            ) from exc
        except SMTPResponseException as exc:
            await self._rset(smtp)
            raise SendError(
                f"message refused after DATA: {exc.code} {exc.message}",
                permanent=exc.code >= 500,
                code=exc.code,
                refused=refused,
            ) from exc
        return SendResult(
            accepted=[r for r in recipients if r not in refused],
            refused=refused,
            response=f"{response.code} {response.message}",
        )
