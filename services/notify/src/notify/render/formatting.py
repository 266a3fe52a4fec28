"""Money and dates in a customer's locale, with Babel. Money is minor units, never a float."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from babel import Locale, UnknownLocaleError
from babel.dates import format_date as _babel_date
from babel.dates import format_datetime as _babel_datetime
from babel.numbers import format_currency, get_currency_precision

DEFAULT_LOCALE = "en-US"


@lru_cache(maxsize=256)
def babel_locale(tag: str) -> Locale:
    """The Babel locale of a BCP 47 tag (`de-CH`, `fr_FR`, `en`); unknown tags mean en-US."""
    try:
        return Locale.parse(tag.replace("-", "_"))
    except (UnknownLocaleError, ValueError, TypeError):
        return Locale.parse(DEFAULT_LOCALE.replace("-", "_"))


def locale_chain(tag: str) -> list[str]:
    """Template folders to try for a locale, most specific first: de-CH → de → en."""
    parts = [p for p in tag.replace("_", "-").split("-") if p]
    chain: list[str] = []
    for n in range(len(parts), 0, -1):
        candidate = "-".join([parts[0].lower(), *parts[1:n]])
        if candidate not in chain:
            chain.append(candidate)
    if "en" not in chain:
        chain.append("en")
    return chain


@lru_cache(maxsize=64)
def currency_precision(currency: str) -> int:
    """Minor-unit digits of an ISO 4217 currency: JPY 0, EUR 2, KWD 3."""
    return int(get_currency_precision(currency))


def to_decimal(amount_minor: int, currency: str) -> Decimal:
    """Minor units as an exact decimal amount of the currency: 123456 EUR → 1234.56."""
    return Decimal(int(amount_minor)).scaleb(-currency_precision(currency))


def format_money(amount_minor: int, currency: str, locale: str | Locale) -> str:
    """`123456, "EUR", "de-DE"` → `"1.234,56\\xa0€"`: Babel's format with the currency's digits."""
    loc = locale if isinstance(locale, Locale) else babel_locale(locale)
    return _format_money(int(amount_minor), currency, loc)


@lru_cache(maxsize=8192)
def _format_money(amount_minor: int, currency: str, loc: Locale) -> str:
    # Babel takes ~40 µs a call and a message shows the same amounts several times.
    return str(format_currency(to_decimal(amount_minor, currency), currency, locale=loc))


def format_date(
    value: dt.date | dt.datetime,
    format: str = "long",
    locale: str | Locale = DEFAULT_LOCALE,
    timezone: str = "UTC",
) -> str:
    """A date (or an instant, shown in `timezone`) in the locale's `short/medium/long/full`."""
    loc = locale if isinstance(locale, Locale) else babel_locale(locale)
    if isinstance(value, dt.datetime):
        try:
            tz = ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError):
            tz = ZoneInfo("UTC")
        return str(_babel_datetime(value, format, tzinfo=tz, locale=loc))
    return str(_babel_date(value, format, locale=loc))
