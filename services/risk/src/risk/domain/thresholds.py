"""Every number that decides a warning sign or a score band, in one frozen object.

Built from the service's settings (RISK_* environment variables), passed to the pure domain
functions, so a test can state its own thresholds and the same inputs give the same output.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Thresholds(BaseModel):
    model_config = ConfigDict(frozen=True)

    # growing balance: overdue up in N consecutive 30-day periods, or by X% in 30 days
    growing_periods: int = 3
    growing_pct: float = 50.0
    growing_min_amount: int = 100_00
    # payment method switch: an established habit (share, count) broken by the last payment
    method_min_payments: int = 5
    method_dominance: float = 0.8
    method_recent: int = 3
    # slowing payment: days to pay in the last 90 days against the 12 months before
    slowing_min_days: float = 10.0
    slowing_ratio: float = 1.5
    slowing_min_recent: int = 2
    slowing_min_baseline: int = 3
    # broken promises within the window, none kept since
    broken_promises: int = 2
    promise_window_days: int = 180
    # reversed payments within the window
    reversal_window_days: int = 90
    # a run of partial payments
    partial_run: int = 3
    # repeated disputes within the window
    disputes: int = 3
    dispute_window_days: int = 180
    # "forgot" / "not received" / "wrong contact" within the window, since the last
    # change of the customer's contacts
    contact_responses: int = 2
    contact_window_days: int = 180
    # steady early payment: the last N invoices all paid at least `early_days` early
    early_invoices: int = 5
    early_days: int = 1
    # score bands: the lowest score of medium, high, critical
    band_medium: int = 25
    band_high: int = 50
    band_critical: int = 75


DEFAULT = Thresholds()
