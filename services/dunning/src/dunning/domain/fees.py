"""Late fees and simple interest, in integer minor units (never floats), rounded half up."""

from __future__ import annotations

import datetime as dt

from dunning.domain.policy import Fee


def _div_half_up(numerator: int, denominator: int) -> int:
    return (2 * numerator + denominator) // (2 * denominator)


def late_fee(fee: Fee, outstanding: int) -> int:
    """Flat + percentage of the outstanding balance, capped; nothing on a zero balance."""
    if outstanding <= 0:
        return 0
    amount = fee.flat + _div_half_up(outstanding * fee.percent_bp, 10_000)
    return min(amount, fee.cap) if fee.cap is not None else amount


def simple_interest(principal: int, annual_rate_bp: int, start: dt.date, end: dt.date) -> int:
    """principal * rate * days / 365 for the days from `start` to `end` (0 if not after)."""
    days = (end - start).days
    if principal <= 0 or days <= 0:
        return 0
    return _div_half_up(principal * annual_rate_bp * days, 10_000 * 365)
