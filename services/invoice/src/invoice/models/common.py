"""Shared field types and helpers of the invoice models: ids, money, currency, time."""

from __future__ import annotations

import datetime as dt
import os
import re
import time
from functools import lru_cache
from typing import Annotated
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from annotated_types import Ge, Gt
from babel import Locale, UnknownLocaleError
from babel.numbers import get_currency_precision, list_currencies
from pydantic import AfterValidator, Strict
from sqlmodel import SQLModel

# Constraint names Alembic can diff and drop; set before any table is defined.
SQLModel.metadata.naming_convention = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> dt.datetime:
    """The current instant, timezone-aware UTC."""
    return dt.datetime.now(dt.UTC)


def new_id(prefix: str) -> str:
    """A time-ordered id such as `inv_0192f3a4b5c6d7e8f9a0b1c2d3e4f5a6` (48-bit ms, 80 random).

    Ordered by creation, so keyset pagination by id lists oldest first.
    """
    ms = time.time_ns() // 1_000_000
    return f"{prefix}_{ms:012x}{os.urandom(10).hex()}"


@lru_cache(maxsize=1)
def _currencies() -> frozenset[str]:
    return frozenset(c for c in list_currencies() if re.fullmatch(r"[A-Z]{3}", c))


def currency_exponent(code: str) -> int:
    """The number of minor-unit digits of an ISO 4217 currency (JPY 0, EUR 2, KWD 3)."""
    return int(get_currency_precision(code))


def _check_currency(v: str) -> str:
    if v not in _currencies():
        raise ValueError(f"{v!r} is not an ISO 4217 currency code (e.g. EUR, USD, JPY)")
    return v


def _check_timezone(v: str) -> str:
    try:
        ZoneInfo(v)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"{v!r} is not an IANA time zone (e.g. Europe/Berlin)") from exc
    if v not in _timezones():
        raise ValueError(f"{v!r} is not an IANA time zone (e.g. Europe/Berlin)")
    return v


@lru_cache(maxsize=1)
def _timezones() -> frozenset[str]:
    return frozenset(available_timezones())


@lru_cache(maxsize=1)
def _countries() -> frozenset[str]:
    return frozenset(
        t
        for t in map(str, Locale("en").territories)
        if re.fullmatch(r"[A-Z]{2}", t) and t not in {"ZZ", "EU", "EZ", "UN", "QO"}
    )


def _check_country(v: str) -> str:
    if v not in _countries():
        raise ValueError(f"{v!r} is not an ISO 3166-1 alpha-2 country code (e.g. DE)")
    return v


def _check_locale(v: str) -> str:
    if not re.fullmatch(r"[a-zA-Z]{2,3}(-[A-Za-z0-9]{2,8})*", v):
        raise ValueError(f"{v!r} is not a BCP 47 language tag (e.g. de-DE)")
    try:
        Locale.parse(v, sep="-")
    except (UnknownLocaleError, ValueError) as exc:
        raise ValueError(f"{v!r} is not a known locale (e.g. de-DE)") from exc
    return v


E164 = re.compile(r"^\+[1-9]\d{6,14}$")


def _check_phone(v: str) -> str:
    compact = re.sub(r"[\s\-().]", "", v)
    if not E164.fullmatch(compact):
        raise ValueError(f"{v!r} is not an E.164 phone number (e.g. +4930123456)")
    return compact


#: An amount in minor units: an integer (never a float, bool or string), not negative.
Money = Annotated[int, Strict(), Ge(0)]
#: A strictly positive amount in minor units.
PositiveMoney = Annotated[int, Strict(), Gt(0)]
CurrencyCode = Annotated[str, AfterValidator(_check_currency)]
TimeZoneName = Annotated[str, AfterValidator(_check_timezone)]
CountryCode = Annotated[str, AfterValidator(_check_country)]
LocaleTag = Annotated[str, AfterValidator(_check_locale)]
PhoneNumber = Annotated[str, AfterValidator(_check_phone)]
