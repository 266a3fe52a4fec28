"""SMS: a provider interface, a Twilio-shaped adapter, E.164 numbers and quiet hours."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from typing import Any, Protocol
from zoneinfo import ZoneInfo

import httpx
import phonenumbers

__all__ = [
    "InvalidPhone",
    "SmsError",
    "SmsProvider",
    "SmsResult",
    "TwilioSms",
    "quiet_until",
    "to_e164",
]


@dataclass(frozen=True)
class SmsResult:
    provider_id: str  # the provider's message id (Twilio: "SM...")
    status: str  # the provider's status, e.g. "queued"
    raw: dict[str, Any] = field(default_factory=dict)


class SmsError(Exception):
    """A send that failed; permanent when the same request can never succeed (a bad number).

    uncertain: the request may have reached the provider (a timeout after sending it).
    """

    def __init__(
        self,
        detail: str,
        *,
        permanent: bool,
        status_code: int | None = None,
        code: int | None = None,
        uncertain: bool = False,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.permanent = permanent
        self.status_code = status_code  # the HTTP status, when there was a response
        self.code = code  # the provider's error code (Twilio: 21211 invalid To)
        self.uncertain = uncertain


class SmsProvider(Protocol):
    async def send(self, to: str, body: str, *, idempotency_key: str) -> SmsResult: ...


class TwilioSms:
    """Twilio's Programmable Messaging API (and anything that speaks its shape)."""

    def __init__(
        self,
        *,
        account_sid: str,
        auth_token: str,
        from_number: str,
        base_url: str = "https://api.twilio.com",
        http: httpx.AsyncClient | None = None,
        timeout: float = 10.0,
    ) -> None:
        self.account_sid = account_sid
        self.from_number = from_number
        self._auth = httpx.BasicAuth(account_sid, auth_token)
        self._url = f"{base_url.rstrip('/')}/2010-04-01/Accounts/{account_sid}/Messages.json"
        self._http = http
        self._timeout = timeout

    async def send(self, to: str, body: str, *, idempotency_key: str) -> SmsResult:
        """POST one message. Twilio itself ignores the idempotency key header (its Messages
        API has none); the local catcher honours it. Exactly-once is the caller's claim."""
        client = self._http or httpx.AsyncClient()
        try:
            response = await client.post(
                self._url,
                data={"To": to, "From": self.from_number, "Body": body},
                auth=self._auth,
                headers={"Idempotency-Key": idempotency_key},
                timeout=self._timeout,
                follow_redirects=False,
            )
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            raise SmsError(f"cannot reach {self._url}: {exc!r}", permanent=False) from exc
        except httpx.HTTPError as exc:
            raise SmsError(
                f"{self._url} did not answer: {exc!r}", permanent=False, uncertain=True
            ) from exc
        finally:
            if self._http is None:
                await client.aclose()
        return _twilio_result(response)


def _twilio_result(response: httpx.Response) -> SmsResult:
    try:
        data = response.json()
    except ValueError:
        data = {}
    if not isinstance(data, dict):
        data = {}
    status = response.status_code
    if 200 <= status < 300:
        sid = data.get("sid")
        if not isinstance(sid, str):
            raise SmsError(f"{status} without a message sid", permanent=False, status_code=status)
        return SmsResult(provider_id=sid, status=str(data.get("status", "")), raw=data)
    code = data.get("code") if isinstance(data.get("code"), int) else None
    detail = f"{status} {data.get('message') or response.text[:200]}"
    if code is not None:
        detail += f" (code {code})"
    # 429 and 5xx pass; 401/403 are our credentials, not the recipient: fix config, retry.
    # Any other 4xx (21211 invalid To, 21610 unsubscribed, ...) will fail the same way again.
    permanent = 400 <= status < 500 and status not in (401, 403, 408, 409, 429)
    raise SmsError(detail, permanent=permanent, status_code=status, code=code)


class InvalidPhone(ValueError):
    def __init__(self, phone: str, country: str, why: str) -> None:
        super().__init__(f"{phone!r} is not a valid phone number for {country}: {why}")
        self.phone = phone


def to_e164(phone: str, country: str) -> str:
    """The number in E.164 ("+14155550100"); country is the ISO 3166 default region."""
    try:
        number = phonenumbers.parse(phone, country.upper())
    except phonenumbers.NumberParseException as exc:
        raise InvalidPhone(phone, country, str(exc)) from exc
    if not phonenumbers.is_valid_number(number):
        raise InvalidPhone(phone, country, "no such number in the numbering plan")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def quiet_until(
    now: datetime,
    timezone: str,
    start: time = time(20, 0),
    end: time = time(8, 0),
) -> datetime | None:
    """None when a message may go out now; else the UTC instant the quiet hours end.

    Quiet hours are [start, end) in local wall time in `timezone`, crossing midnight when
    start > end; start == end means no quiet hours. The end is found on the local calendar
    (so a DST change overnight moves it by an hour in UTC, as it should); an end that falls
    in a DST gap resolves to the instant just after the gap.
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    zone = ZoneInfo(timezone)
    local = now.astimezone(zone)
    t = local.time().replace(tzinfo=None)
    if start == end:
        return None
    quiet = (t >= start or t < end) if start > end else (start <= t < end)
    if not quiet:
        return None
    day = local.date() if t < end else local.date() + timedelta(days=1)
    resume = datetime.combine(day, end, tzinfo=zone)
    # A wall time skipped by a DST gap: zoneinfo reads it with the old offset, which lands
    # after the gap; normalising through UTC gives the real instant.
    return resume.astimezone(UTC)
