"""Calls to the services that own the data, with the signed-in user's own tokens.

Every failure becomes a `ServiceError` carrying one plain sentence for the page: a collector
sees "The dunning service did not answer…", never a traceback or a problem document.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from notify.ui.accounts import SignedIn

SERVICES = ("invoice", "dunning", "risk", "notify")
#: Items asked for a page, and pages followed at most: a runaway list stops here.
PAGE_SIZE = 200
MAX_PAGES = 50


class ServiceError(Exception):
    """A call to another service failed; `sentence` is what the user is shown."""

    def __init__(
        self,
        sentence: str,
        status: int = 502,
        details: list[str] | None = None,
        *,
        why: str | None = None,
        unavailable: bool = False,
    ) -> None:
        super().__init__(sentence)
        self.sentence = sentence
        self.status = status
        #: Each field the service refused, as "field: why" (from the problem's `errors`).
        self.details = details or []
        #: The cause as a clause ("the invoice service did not answer within 2 s"), for a
        #: page that says which of its sections is missing and why.
        self.why = why or sentence[:1].lower() + sentence[1:].rstrip(".")
        #: The service did not answer, or answered 5xx or 429: nothing says the record is not
        #: there or not the user's, so a page may go on with what the other services said.
        self.unavailable = unavailable


def _detail(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return ""
    if isinstance(body, dict):
        detail = body.get("detail")
        if isinstance(detail, str):
            return detail.rstrip(".")
    return ""


def _field_errors(response: httpx.Response) -> list[str]:
    try:
        body = response.json()
    except ValueError:
        return []
    errors = body.get("errors") if isinstance(body, dict) else None
    if not isinstance(errors, list):
        return []
    return [str(e["detail"]) for e in errors if isinstance(e, dict) and e.get("detail")]


def error_for(service: str, response: httpx.Response) -> ServiceError:
    """The sentence for a service's error answer."""
    code = response.status_code
    if code in (401, 403):
        return ServiceError(
            f"The {service} service did not accept your rights for this; ask an admin.", 403
        )
    if code == 404:
        return ServiceError(f"The {service} service does not know this record.", 404)
    if code in (409, 422):
        detail = _detail(response)
        why = f": {detail}" if detail else ""
        return ServiceError(f"The {service} service refused it{why}.", 422, _field_errors(response))
    if code == 429:
        return ServiceError(
            f"The {service} service is busy; try again in a minute.",
            503,
            why=f"the {service} service is busy",
            unavailable=True,
        )
    return ServiceError(
        f"The {service} service had a problem (HTTP {code}); nothing was changed here.",
        502,
        why=f"the {service} service had a problem (HTTP {code})",
        unavailable=code >= 500,
    )


@dataclass
class Services:
    """Shared HTTP clients: one for the other services, one in-process for notify's own API."""

    http: httpx.AsyncClient
    notify: httpx.AsyncClient
    urls: Mapping[str, str]
    secret: str
    #: A token used for a service the user holds none for (only risk, whose API only reads).
    fallback_tokens: Mapping[str, str]

    def as_user(self, user: SignedIn) -> Api:
        return Api(self, user)


class Api:
    """The services, called as one signed-in user."""

    def __init__(self, services: Services, user: SignedIn) -> None:
        self.services = services
        self.user = user

    def _token(self, service: str) -> str:
        token = self.user.token(service, self.services.secret)
        token = token or self.services.fallback_tokens.get(service)
        if not token:
            raise ServiceError(
                f"Your user has no access to the {service} service; ask an admin to renew it.", 403
            )
        return token

    async def _send(
        self,
        service: str,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
        wait_s: float | None = None,
    ) -> httpx.Response:
        client = self.services.notify if service == "notify" else self.services.http
        base = "" if service == "notify" else self.services.urls[service].rstrip("/")
        all_headers = {"Authorization": f"Bearer {self._token(service)}", **(headers or {})}
        try:
            if wait_s is None:
                return await client.request(
                    method, base + path, params=params, json=json, headers=all_headers
                )
            # httpx's timeout bounds each phase (pool, connect, each read): a service that
            # trickles its answer, or a pool that frees slowly, could take many times
            # `wait_s`. The whole call, queueing for a connection included, gets `wait_s`.
            async with asyncio.timeout(wait_s):
                return await client.request(
                    method,
                    base + path,
                    params=params,
                    json=json,
                    headers=all_headers,
                    timeout=wait_s,
                )
        except (httpx.TimeoutException, TimeoutError) as exc:
            within = f"within {wait_s:g} s" if wait_s is not None else "in time"
            raise ServiceError(
                f"The {service} service did not answer {within}; try again.",
                why=f"the {service} service did not answer {within}",
                unavailable=True,
            ) from exc
        except httpx.HTTPError as exc:
            raise ServiceError(
                f"The {service} service cannot be reached right now.", unavailable=True
            ) from exc

    async def get(
        self,
        service: str,
        path: str,
        params: Mapping[str, Any] | None = None,
        wait_s: float | None = None,
    ) -> Any:
        """The JSON body of a GET (within `wait_s` seconds when given, else the UI's
        service timeout); ServiceError otherwise."""
        response = await self._send(service, "GET", path, params=params, wait_s=wait_s)
        if response.status_code != 200:
            raise error_for(service, response)
        return response.json()

    async def get_or_none(
        self,
        service: str,
        path: str,
        params: Mapping[str, Any] | None = None,
        wait_s: float | None = None,
    ) -> Any:
        """Like `get`, but None when the service does not know the record (404)."""
        response = await self._send(service, "GET", path, params=params, wait_s=wait_s)
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise error_for(service, response)
        return response.json()

    async def pages(
        self,
        service: str,
        path: str,
        params: Mapping[str, Any] | None = None,
        wait_s: float | None = None,
    ) -> tuple[list[Any], bool]:
        """The items of a paginated list (following `next_cursor`, at most MAX_PAGES pages,
        each within `wait_s` when given) and whether that was all of them."""
        items: list[Any] = []
        query = {**(params or {}), "limit": PAGE_SIZE}
        for _ in range(MAX_PAGES):
            page = await self.get(service, path, query, wait_s)
            items.extend(page["items"])
            if not page.get("next_cursor"):
                return items, True
            query["cursor"] = page["next_cursor"]
        return items, False

    async def all_pages(
        self,
        service: str,
        path: str,
        params: Mapping[str, Any] | None = None,
        wait_s: float | None = None,
    ) -> list[Any]:
        """The items of a paginated list (see `pages`)."""
        items, _ = await self.pages(service, path, params, wait_s)
        return items

    async def post(
        self, service: str, path: str, body: Any, idempotency_key: str | None = None
    ) -> tuple[int, Any]:
        """POST `body` with an Idempotency-Key; the status and JSON body of a 2xx answer."""
        return await self.write(service, "POST", path, body, idempotency_key)

    async def write(
        self,
        service: str,
        method: str,
        path: str,
        body: Any = None,
        idempotency_key: str | None = None,
    ) -> tuple[int, Any]:
        """A POST, PUT, PATCH (with an Idempotency-Key) or DELETE; the status and JSON body
        (None when empty) of a 2xx answer, else ServiceError."""
        headers = (
            {} if method == "DELETE" else {"Idempotency-Key": idempotency_key or str(uuid.uuid4())}
        )
        response = await self._send(service, method, path, json=body, headers=headers)
        if not 200 <= response.status_code < 300:
            raise error_for(service, response)
        return response.status_code, (response.json() if response.content else None)


async def gather_limited(calls: Iterable[Awaitable[Any]], limit: int = 8) -> list[Any]:
    """Await `calls` with at most `limit` in flight; each result is a value or a ServiceError."""
    semaphore = asyncio.Semaphore(limit)

    async def one(call: Awaitable[Any]) -> Any:
        async with semaphore:
            try:
                return await call
            except ServiceError as exc:
                return exc

    return list(await asyncio.gather(*(one(c) for c in calls)))
