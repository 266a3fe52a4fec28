"""Dunning policies: an ordered list of steps relative to the due date, and their consequences.

Pure data and validation; no I/O. A policy that passes validation can be planned for any
invoice (`plan.py`) and previewed without state.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Channel = Literal["email", "sms", "webhook", "task"]
Tone = Literal["friendly", "neutral", "firm", "final"]

#: Templates notify knows how to render (issue #4 owns their content). A step naming any
#: other template is refused here, before it could fail at send time.
KNOWN_TEMPLATES: frozenset[str] = frozenset(
    {
        "reminder_upcoming",
        "reminder_due_today",
        "reminder_overdue",
        "reminder_overdue_firm",
        "final_notice",
        "credit_hold_notice",
        "collector_call",
        "webhook_overdue",
        "sms_overdue",
    }
)

NonNegativeMinor = Annotated[int, Field(strict=True, ge=0, description="minor units")]
BasisPoints = Annotated[int, Field(strict=True, ge=0, le=100_000, description="1 bp = 0.01 %")]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Fee(_Frozen):
    """A late fee: flat and/or a percentage of the outstanding balance, with an optional cap."""

    flat: NonNegativeMinor = 0
    percent_bp: BasisPoints = 0
    cap: NonNegativeMinor | None = None

    @model_validator(mode="after")
    def _something(self) -> Fee:
        if self.flat == 0 and self.percent_bp == 0:
            raise ValueError("a fee needs a flat amount or a percentage")
        return self


class Interest(_Frozen):
    """Simple interest on the outstanding principal, 365-day year."""

    annual_rate_bp: BasisPoints
    accrue_from: Literal["due_date", "last_payment"] = "due_date"


class Step(_Frozen):
    key: str = Field(min_length=1, max_length=64, pattern=r"^[a-z0-9_\-]+$")
    offset_days: int = Field(ge=-90, le=365, description="days relative to the due date")
    channel: Channel = "email"
    template: str
    tone: Tone = "neutral"
    fee: Fee | None = None
    interest: Interest | None = None
    credit_hold: bool = False

    @field_validator("template")
    @classmethod
    def _known_template(cls, v: str) -> str:
        if v not in KNOWN_TEMPLATES:
            raise ValueError(f"unknown template {v!r}; known: {', '.join(sorted(KNOWN_TEMPLATES))}")
        return v


class SendWindow(_Frozen):
    """When messages may go out, in the customer's own time zone."""

    start: dt.time = dt.time(9, 0)
    end: dt.time = dt.time(17, 0)
    weekdays: frozenset[int] = Field(
        default=frozenset({0, 1, 2, 3, 4}), description="0 = Monday … 6 = Sunday"
    )

    @model_validator(mode="after")
    def _sane(self) -> SendWindow:
        if self.start >= self.end:
            raise ValueError("send window start must be before its end")
        if not self.weekdays or not self.weekdays <= set(range(7)):
            raise ValueError("weekdays must be a non-empty subset of 0..6")
        return self


class PolicySpec(_Frozen):
    name: str = Field(min_length=1, max_length=120)
    steps: list[Step] = Field(min_length=1, max_length=30)
    send_window: SendWindow = SendWindow()
    skip_holidays: bool = True

    @model_validator(mode="after")
    def _ordered(self) -> PolicySpec:
        offsets = [s.offset_days for s in self.steps]
        if offsets != sorted(offsets) or len(set(offsets)) != len(offsets):
            raise ValueError(
                "steps must be in strictly increasing order of offset_days, got "
                + ", ".join(str(o) for o in offsets)
            )
        keys = [s.key for s in self.steps]
        if len(set(keys)) != len(keys):
            raise ValueError("step keys must be unique")
        messages = [i for i, s in enumerate(self.steps) if not s.credit_hold]
        holds = [i for i, s in enumerate(self.steps) if s.credit_hold]
        if holds and (not messages or holds[0] < messages[0]):
            raise ValueError("a credit hold cannot come before the first reminder")
        for s in self.steps:
            if (s.fee or s.interest or s.credit_hold) and s.offset_days <= 0:
                raise ValueError(
                    f"step {s.key!r}: fees, interest and holds apply only after the due date"
                )
        return self


def _step(key: str, offset: int, template: str, tone: Tone, **kw: object) -> Step:
    return Step.model_validate({"key": key, "offset_days": offset, "template": template,
                                "tone": tone, **kw})  # fmt: skip


#: The default policy (issue #3): a friendly reminder a week before, a note on the due date,
#: +3, +10 and +20 days, a final notice with a late fee at +30, and a credit hold at +45.
DEFAULT_POLICY = PolicySpec(
    name="Default",
    steps=[
        _step("before_7", -7, "reminder_upcoming", "friendly"),
        _step("due_today", 0, "reminder_due_today", "friendly"),
        _step("overdue_3", 3, "reminder_overdue", "neutral"),
        _step("overdue_10", 10, "reminder_overdue", "neutral"),
        _step("overdue_20", 20, "reminder_overdue_firm", "firm"),
        # 40.00 in the invoice currency: the fixed recovery compensation of EU Directive
        # 2011/7/EU, a common B2B default; change it per segment.
        _step("final_30", 30, "final_notice", "final", fee={"flat": 4000}),
        _step("hold_45", 45, "credit_hold_notice", "final", credit_hold=True),
    ],
)
