"""Outbound webhooks signed per Standard Webhooks, with an SSRF guard and the retry schedule.

The guard resolves the target host and refuses it when any address is not public. The HTTP
client resolves the name again when it connects, so a DNS answer that changes between the
two (rebinding) is not covered; targets are configured by operators, not end users.
"""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import secrets
import socket
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import httpx
from standardwebhooks import Webhook

__all__ = [
    "TargetRefused",
    "WebhookError",
    "WebhookResult",
    "WebhookSender",
    "backoff",
    "check_target",
    "new_secret",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class TargetRefused(Exception):
    """The URL may not be called: a scheme other than http(s), or a non-public address."""


class WebhookError(Exception):
    """No HTTP response: the target could not be reached or did not answer in time.

    uncertain: the request went out, so the receiver may have processed it.
    """

    def __init__(self, detail: str, *, uncertain: bool) -> None:
        super().__init__(detail)
        self.detail = detail
        self.uncertain = uncertain


@dataclass(frozen=True)
class WebhookResult:
    status_code: int
    body_excerpt: str  # the first 500 characters of the response body
    gone: bool  # 410: the receiver asks us to stop; disable the endpoint

    @property
    def ok(self) -> bool:
        return 200 <= self.status_code < 300


def _why_not_public(addr: IPAddress) -> str | None:
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        why = _why_not_public(addr.ipv4_mapped)
        return f"IPv4-mapped {why}" if why else None
    for attr, why in (
        ("is_unspecified", "unspecified"),
        ("is_loopback", "loopback"),
        ("is_link_local", "link-local"),
        ("is_multicast", "multicast"),
        ("is_reserved", "reserved"),
        ("is_private", "private"),
    ):
        if getattr(addr, attr):
            return f"{why} address {addr}"
    if not addr.is_global:
        return f"non-global address {addr}"  # e.g. 100.64.0.0/10 carrier-grade NAT
    return None


async def check_target(url: str, *, allow_private: bool) -> None:
    """Raise TargetRefused unless url is http(s) and every address of its host is public."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise TargetRefused(f"{url}: scheme {parts.scheme!r} is not http or https")
    host = parts.hostname
    if not host:
        raise TargetRefused(f"{url}: no host")
    if allow_private:
        return
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        raise TargetRefused(f"{url}: {exc}") from exc
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise TargetRefused(f"{host}: does not resolve ({exc})") from exc
    for _family, _type, _proto, _canon, sockaddr in infos:
        addr = ipaddress.ip_address(str(sockaddr[0]).split("%")[0])
        why = _why_not_public(addr)
        if why:
            raise TargetRefused(f"{host}: resolves to a {why}; private targets are not allowed")


class WebhookSender:
    """POSTs signed payloads; one attempt per call, redirects not followed."""

    def __init__(
        self,
        http: httpx.AsyncClient | None = None,
        *,
        timeout: float = 10,
        allow_private: bool = False,
    ) -> None:
        self._http = http
        self._timeout = timeout
        self.allow_private = allow_private

    async def send(
        self, url: str, secret: str, *, msg_id: str, timestamp: datetime, payload: bytes
    ) -> WebhookResult:
        """Deliver once. msg_id stays the same across retries; timestamp is this attempt's."""
        await check_target(url, allow_private=self.allow_private)
        if timestamp.tzinfo is None:
            raise ValueError("timestamp must be timezone-aware")
        # standardwebhooks.sign() replaces the tzinfo with UTC rather than converting.
        at = timestamp.astimezone(UTC)
        signature = Webhook(secret).sign(msg_id, at, payload.decode("utf-8"))
        headers = {
            "webhook-id": msg_id,
            "webhook-timestamp": str(int(at.timestamp())),
            "webhook-signature": signature,
            "content-type": "application/json",
            "accept-encoding": "identity",  # the excerpt is read raw, never decompressed
        }
        client = self._http or httpx.AsyncClient()
        try:
            async with client.stream(
                "POST",
                url,
                content=payload,
                headers=headers,
                timeout=self._timeout,
                follow_redirects=False,
            ) as response:
                body = await _read_at_most(response, _EXCERPT_BYTES)
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            raise WebhookError(f"cannot reach {url}: {exc!r}", uncertain=False) from exc
        except httpx.HTTPError as exc:
            raise WebhookError(f"{url} did not answer: {exc!r}", uncertain=True) from exc
        finally:
            if self._http is None:
                await client.aclose()
        return WebhookResult(
            status_code=response.status_code,
            body_excerpt=body.decode("utf-8", "replace")[:500],
            gone=response.status_code == 410,
        )


_EXCERPT_BYTES = 2048


async def _read_at_most(response: httpx.Response, limit: int) -> bytes:
    """The start of the body: a receiver cannot make us read (or hold) a large one."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_raw():
        chunks.append(chunk)
        size += len(chunk)
        if size >= limit:
            break
    return b"".join(chunks)[:limit]


# The Standard Webhooks / Svix schedule: the delay after the n-th failed attempt.
_SCHEDULE = (
    timedelta(seconds=5),
    timedelta(minutes=5),
    timedelta(minutes=30),
    timedelta(hours=2),
    timedelta(hours=5),
    timedelta(hours=10),
    timedelta(hours=10),
)
MAX_ATTEMPTS = len(_SCHEDULE) + 1


def backoff(attempt: int) -> timedelta | None:
    """The wait after failed attempt number `attempt` (1-based); None after the last (8th)."""
    if attempt < 1:
        raise ValueError("attempts are counted from 1")
    if attempt > len(_SCHEDULE):
        return None
    return _SCHEDULE[attempt - 1]


def new_secret() -> str:
    """A fresh signing secret in the Standard Webhooks form."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode("ascii")
