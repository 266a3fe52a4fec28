"""Business days and send instants in the customer's own time zone and country.

A step's nominal date is a calendar date (due date + offset). It moves forward to the next
business day (the send window's weekdays, minus the public holidays of the customer's
country from the `holidays` package), and is sent at the window's opening time *in local
wall-clock time*. The UTC instant is computed from the local time for that very date, so a
DST change between the due date and the send date never shifts a send by an hour.
"""

from __future__ import annotations

import datetime as dt
from functools import lru_cache
from zoneinfo import ZoneInfo

import holidays

from dunning.domain.policy import SendWindow

#: A step never moves more than this far looking for a business day (a guard against a
#: window whose weekdays and holidays leave no day at all).
_MAX_SHIFT_DAYS = 31


@lru_cache(maxsize=512)
def _holidays(country: str, year: int) -> holidays.HolidayBase:
    try:
        return holidays.country_holidays(country.upper(), years=year)
    except NotImplementedError:  # a country the package does not cover: weekends only
        return holidays.HolidayBase()


def is_holiday(day: dt.date, country: str) -> bool:
    return day in _holidays(country, day.year)


def holiday_name(day: dt.date, country: str) -> str | None:
    name = _holidays(country, day.year).get(day)
    return str(name) if name else None


def next_business_day(
    day: dt.date, *, window: SendWindow, country: str, skip_holidays: bool = True
) -> dt.date:
    """`day` itself if it is a business day, else the first one after it."""
    for shift in range(_MAX_SHIFT_DAYS + 1):
        candidate = day + dt.timedelta(days=shift)
        if candidate.weekday() not in window.weekdays:
            continue
        if skip_holidays and is_holiday(candidate, country):
            continue
        return candidate
    raise ValueError(f"no business day within {_MAX_SHIFT_DAYS} days of {day} in {country}")


def send_instant(day: dt.date, *, window: SendWindow, timezone: str) -> dt.datetime:
    """The UTC instant of the window's opening on local date `day` in `timezone`."""
    local = dt.datetime.combine(day, window.start, tzinfo=ZoneInfo(timezone))
    # zoneinfo resolves a wall time that falls in a DST gap forward (fold=0), so 02:30 on a
    # spring-forward night still yields a real instant; windows open well after that anyway.
    return local.astimezone(dt.UTC)


def local_today(now: dt.datetime, timezone: str) -> dt.date:
    """The calendar date it is now at the customer's address."""
    return now.astimezone(ZoneInfo(timezone)).date()
