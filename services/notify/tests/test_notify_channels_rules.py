"""Pure channel rules: E.164 numbers, quiet hours, the SSRF guard, the retry schedule, secrets."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, time, timedelta

import pytest
from notify.channels.sms import InvalidPhone, quiet_until, to_e164
from notify.channels.webhooks import TargetRefused, backoff, check_target, new_secret
from standardwebhooks import Webhook


@pytest.mark.parametrize(
    ("phone", "country", "e164"),
    [
        ("(650) 253-0000", "US", "+16502530000"),
        ("+1 415 555 0100", "DE", "+14155550100"),  # an international number keeps its country
        ("030 12345678", "DE", "+493012345678"),
        ("0151 12345678", "de", "+4915112345678"),
        ("01 42 68 53 00", "FR", "+33142685300"),
        ("06 12 34 56 78", "FR", "+33612345678"),
    ],
)
def test_to_e164(phone: str, country: str, e164: str) -> None:
    assert to_e164(phone, country) == e164


@pytest.mark.parametrize(("phone", "country"), [("123", "US"), ("0151 123", "DE"), ("hi", "FR")])
def test_to_e164_names_the_invalid_number(phone: str, country: str) -> None:
    with pytest.raises(InvalidPhone, match=repr(phone)):
        to_e164(phone, country)


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


@pytest.mark.parametrize(
    ("now", "zone", "expected"),
    [
        # New York in winter is UTC-5: 12:00 local is allowed.
        (utc(2026, 1, 15, 17, 0), "America/New_York", None),
        # 19:59 local: still allowed; 20:00 local: quiet until 08:00 tomorrow (13:00 UTC).
        (utc(2026, 1, 16, 0, 59), "America/New_York", None),
        (utc(2026, 1, 16, 1, 0), "America/New_York", utc(2026, 1, 16, 13, 0)),
        # 02:00 local, after midnight: quiet until 08:00 the same local day.
        (utc(2026, 1, 16, 7, 0), "America/New_York", utc(2026, 1, 16, 13, 0)),
        # 08:00 local exactly: allowed again.
        (utc(2026, 1, 16, 13, 0), "America/New_York", None),
        # Berlin, the night clocks go forward (29 March 2026): 22:00 CET is 21:00 UTC, and
        # 08:00 the next morning is CEST, 06:00 UTC (not 07:00).
        (utc(2026, 3, 28, 21, 0), "Europe/Berlin", utc(2026, 3, 29, 6, 0)),
        # Berlin, the night clocks go back (25 October 2026): 22:00 CEST is 20:00 UTC, and
        # 08:00 the next morning is CET, 07:00 UTC.
        (utc(2026, 10, 24, 20, 0), "Europe/Berlin", utc(2026, 10, 25, 7, 0)),
        # Tokyo has no DST; 23:00 JST is 14:00 UTC, quiet until 08:00 JST = 23:00 UTC.
        (utc(2026, 7, 1, 14, 0), "Asia/Tokyo", utc(2026, 7, 1, 23, 0)),
    ],
)
def test_quiet_until(now: datetime, zone: str, expected: datetime | None) -> None:
    assert quiet_until(now, zone) == expected


def test_quiet_window_within_a_day_and_an_end_in_a_dst_gap() -> None:
    lunch = (time(12, 0), time(14, 0))
    assert quiet_until(utc(2026, 6, 1, 9, 0), "Europe/Paris", *lunch) is None  # 11:00 local
    assert quiet_until(utc(2026, 6, 1, 10, 30), "Europe/Paris", *lunch) == utc(2026, 6, 1, 12)
    # New York skips 02:00-03:00 on 8 March 2026; a window ending 02:30 ends at 03:30 EDT.
    until = quiet_until(utc(2026, 3, 8, 6, 30), "America/New_York", time(1, 0), time(2, 30))
    assert until == utc(2026, 3, 8, 7, 30)
    assert quiet_until(utc(2026, 3, 8, 6, 30), "UTC", time(9), time(9)) is None  # no window
    with pytest.raises(ValueError, match="aware"):
        quiet_until(datetime(2026, 1, 1, 22), "UTC")


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://127.0.0.1:8080/hook", "loopback"),
        ("http://localhost/hook", "loopback"),
        ("http://[::1]/hook", "loopback"),
        ("http://[::ffff:127.0.0.1]/hook", "IPv4-mapped loopback"),
        ("http://10.1.2.3/hook", "private"),
        ("http://172.16.0.1/hook", "private"),
        ("https://192.168.1.10/hook", "private"),
        ("http://[fd00::1]/hook", "private"),
        ("http://169.254.169.254/latest/meta-data/", "link-local"),
        ("http://[fe80::1]/hook", "link-local"),
        ("http://0.0.0.0/hook", "unspecified"),
        ("http://224.0.0.1/hook", "multicast"),
        ("http://240.0.0.1/hook", "reserved"),
        ("http://100.64.0.1/hook", "non-global"),
        ("ftp://8.8.8.8/hook", "scheme"),
        ("file:///etc/passwd", "scheme"),
    ],
)
async def test_check_target_refuses(url: str, why: str) -> None:
    with pytest.raises(TargetRefused, match=why):
        await check_target(url, allow_private=False)


async def test_check_target_allows() -> None:
    await check_target("https://8.8.8.8/hook", allow_private=False)
    await check_target("https://[2001:4860:4860::8888]/hook", allow_private=False)
    await check_target("http://localhost:8004/hook", allow_private=True)
    with pytest.raises(TargetRefused, match="scheme"):
        await check_target("gopher://localhost/", allow_private=True)


def test_backoff_follows_the_standard_webhooks_schedule() -> None:
    delays = [backoff(n) for n in range(1, 9)]
    assert delays == [
        timedelta(seconds=5),
        timedelta(minutes=5),
        timedelta(minutes=30),
        timedelta(hours=2),
        timedelta(hours=5),
        timedelta(hours=10),
        timedelta(hours=10),
        None,  # the 8th attempt was the last
    ]
    with pytest.raises(ValueError, match="from 1"):
        backoff(0)


def test_new_secret() -> None:
    secret = new_secret()
    assert secret.startswith("whsec_")
    assert len(base64.b64decode(secret.removeprefix("whsec_"))) == 24
    assert new_secret() != secret
    Webhook(secret)  # the reference implementation accepts it
