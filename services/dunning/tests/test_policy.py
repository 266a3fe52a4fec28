"""Invalid policies are refused with a message naming the problem; fees are integer money."""

from __future__ import annotations

from typing import Any

import pytest
from dunning.domain.fees import late_fee, simple_interest
from dunning.domain.policy import DEFAULT_POLICY, Fee, PolicySpec
from pydantic import ValidationError


def spec(**over: Any) -> dict[str, Any]:
    base = DEFAULT_POLICY.model_dump(mode="json")
    base.update(over)
    return base


def steps_with(i: int, **change: Any) -> list[dict[str, Any]]:
    steps = DEFAULT_POLICY.model_dump(mode="json")["steps"]
    steps[i] = {**steps[i], **change}
    return steps


@pytest.mark.parametrize(
    ("policy", "message"),
    [
        (spec(steps=steps_with(2, offset_days=25)), "increasing order of offset_days"),
        (spec(steps=steps_with(5, fee={"flat": -1})), "greater than or equal to 0"),
        (spec(steps=steps_with(1, channel="pigeon")), "'email', 'sms', 'webhook' or 'task'"),
        (spec(steps=steps_with(1, template="nope")), "unknown template 'nope'"),
        (spec(steps=steps_with(1, credit_hold=True)), "only after the due date"),
        (
            spec(
                steps=[
                    {
                        "key": "h",
                        "offset_days": 5,
                        "template": "credit_hold_notice",
                        "credit_hold": True,
                    },
                    {"key": "r", "offset_days": 9, "template": "reminder_overdue"},
                ]
            ),
            "credit hold cannot come before the first reminder",
        ),
        (spec(steps=steps_with(5, fee={"flat": 1.5})), "valid integer"),
        (spec(steps=[]), "at least 1 item"),
        (spec(send_window={"start": "18:00", "end": "09:00"}), "start must be before its end"),
        (spec(steps=steps_with(1, key="before_7")), "step keys must be unique"),
    ],
)
def test_invalid_policy_is_refused(policy: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        PolicySpec.model_validate(policy)


def test_default_policy_is_valid_and_round_trips() -> None:
    assert PolicySpec.model_validate(DEFAULT_POLICY.model_dump(mode="json")) == DEFAULT_POLICY
    assert [s.offset_days for s in DEFAULT_POLICY.steps] == [-7, 0, 3, 10, 20, 30, 45]
    assert DEFAULT_POLICY.steps[-1].credit_hold


def test_late_fee_flat_percent_and_cap() -> None:
    assert late_fee(Fee(flat=4000), 37500) == 4000
    assert late_fee(Fee(percent_bp=150), 100_001) == 1500  # 1.5 %, rounded half up
    assert late_fee(Fee(flat=1000, percent_bp=500, cap=2500), 100_000) == 2500
    assert late_fee(Fee(flat=1000), 0) == 0  # nothing owed, no fee


def test_simple_interest_is_exact_integer_money() -> None:
    import datetime as dt

    d = dt.date(2027, 1, 1)
    assert simple_interest(365_000, 1000, d, d + dt.timedelta(days=1)) == 100
    assert simple_interest(100, 800, d, d + dt.timedelta(days=30)) == 1  # 0.66 → 1
    assert simple_interest(100, 800, d, d) == 0
