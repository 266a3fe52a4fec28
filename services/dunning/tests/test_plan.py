"""The default policy's dates, in different time zones, across weekends, holidays and DST."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
from dunning.domain.plan import InvoiceFacts, in_send_window, latest_due, plan
from dunning.domain.policy import DEFAULT_POLICY, PolicySpec, Step


def facts(
    due: dt.date,
    *,
    tz: str = "Europe/Berlin",
    country: str = "DE",
    issued: dt.date | None = None,
    balance: int = 37500,
) -> InvoiceFacts:
    return InvoiceFacts(
        invoice_id="inv_1",
        customer_id="cus_1",
        number="INV-1",
        issue_date=issued or due - dt.timedelta(days=30),
        due_date=due,
        total=balance,
        balance=balance,
        currency="EUR",
        timezone=tz,
        country=country,
    )


def local(p_send_at: dt.datetime, tz: str) -> dt.datetime:
    return p_send_at.astimezone(ZoneInfo(tz))


def by_key(f: InvoiceFacts, policy: PolicySpec = DEFAULT_POLICY) -> dict[str, dt.date]:
    return {p.key: p.send_date for p in plan(f, policy)}


def test_default_policy_on_plain_weekdays() -> None:
    # Due Wednesday 2027-03-10 in Berlin: no holidays anywhere near.
    dates = by_key(facts(dt.date(2027, 3, 10)))
    assert dates == {
        "before_7": dt.date(2027, 3, 3),  # Wednesday
        "due_today": dt.date(2027, 3, 10),
        "overdue_3": dt.date(2027, 3, 15),  # +3 = Saturday 13th → Monday 15th
        "overdue_10": dt.date(2027, 3, 22),  # +10 = Saturday 20th → Monday
        "overdue_20": dt.date(2027, 3, 30),  # Tuesday
        "final_30": dt.date(2027, 4, 9),  # Friday
        "hold_45": dt.date(2027, 4, 26),  # +45 = Saturday 24th → Monday 26th
    }


def test_public_holidays_of_the_customers_country_move_a_step() -> None:
    # Due 2026-12-23: +3 is Saturday 26 Dec (Boxing Day in DE, GB); the next business day
    # in Germany is Monday 28th. In the UK 28 Dec 2026 is the substitute Boxing Day holiday,
    # so the same step waits until Tuesday 29th there.
    de = plan(facts(dt.date(2026, 12, 23)), DEFAULT_POLICY)
    gb = plan(facts(dt.date(2026, 12, 23), tz="Europe/London", country="GB"), DEFAULT_POLICY)
    assert de[2].send_date == dt.date(2026, 12, 28)
    assert gb[2].send_date == dt.date(2026, 12, 29)
    assert "public holiday" in gb[2].reason
    # A US invoice due on Thanksgiving gets its due-date note on Friday.
    us = by_key(facts(dt.date(2026, 11, 26), tz="America/New_York", country="US"))
    assert us["due_today"] == dt.date(2026, 11, 27)


@pytest.mark.parametrize(
    ("tz", "country", "opening_utc"),
    [
        ("Europe/Berlin", "DE", dt.time(8, 0)),  # CET, UTC+1
        ("America/New_York", "US", dt.time(14, 0)),  # EST, UTC-5
        ("Asia/Tokyo", "JP", dt.time(0, 0)),  # JST, UTC+9
        ("Australia/Sydney", "AU", dt.time(22, 0)),  # AEDT, UTC+11: the evening before in UTC
    ],
)
def test_sends_open_at_nine_local_in_each_time_zone(
    tz: str, country: str, opening_utc: dt.time
) -> None:
    for p in plan(facts(dt.date(2027, 2, 10), tz=tz, country=country), DEFAULT_POLICY)[:3]:
        assert local(p.send_at, tz).time() == dt.time(9, 0)
        assert local(p.send_at, tz).date() == p.send_date
        assert p.send_at.time() == opening_utc


def test_a_dst_change_does_not_move_a_send_by_an_hour() -> None:
    # Berlin springs forward on 2027-03-28: a step before it is at 08:00 UTC, one after it at
    # 07:00 UTC, and both are at 09:00 on the customer's wall clock.
    steps = plan(facts(dt.date(2027, 3, 24)), DEFAULT_POLICY)
    before = next(p for p in steps if p.key == "due_today")
    after = next(p for p in steps if p.key == "overdue_10")
    assert before.send_at.time() == dt.time(8, 0)
    assert after.send_at.time() == dt.time(7, 0)
    assert local(before.send_at, "Europe/Berlin").time() == dt.time(9, 0)
    assert local(after.send_at, "Europe/Berlin").time() == dt.time(9, 0)
    # New York falls back on 2026-11-01.
    ny = plan(facts(dt.date(2026, 10, 28), tz="America/New_York", country="US"), DEFAULT_POLICY)
    assert {local(p.send_at, "America/New_York").time() for p in ny} == {dt.time(9, 0)}
    assert {p.send_at.time() for p in ny} == {dt.time(13, 0), dt.time(14, 0)}


def test_a_reminder_before_the_due_date_is_left_out_when_issued_too_late() -> None:
    keys = [
        p.key for p in plan(facts(dt.date(2027, 3, 10), issued=dt.date(2027, 3, 5)), DEFAULT_POLICY)
    ]
    assert keys[0] == "due_today"


def test_final_notice_carries_the_fee_and_reason() -> None:
    final = next(
        p for p in plan(facts(dt.date(2027, 3, 10)), DEFAULT_POLICY) if p.key == "final_30"
    )
    assert final.fee_amount == 4000
    assert "late fee 4000" in final.reason


def test_interest_accrues_from_the_due_date_then_from_the_previous_charge() -> None:
    policy = PolicySpec(
        name="interest",
        steps=[
            Step(key="r", offset_days=1, template="reminder_overdue"),
            Step(
                key="i1",
                offset_days=31,
                template="reminder_overdue_firm",
                interest={"annual_rate_bp": 1000},
            ),
            Step(
                key="i2", offset_days=61, template="final_notice", interest={"annual_rate_bp": 1000}
            ),
        ],
        send_window={"weekdays": {0, 1, 2, 3, 4, 5, 6}},
        skip_holidays=False,
    )
    f = facts(dt.date(2027, 1, 1), balance=365_000)
    i1, i2 = plan(f, policy)[1:]
    # 10 % a year on 3,650.00 is 1.00 a day: 31 days, then the next 30.
    assert (i1.interest_amount, i2.interest_amount) == (3100, 3000)


def test_catch_up_sends_only_the_latest_due_step() -> None:
    steps = plan(facts(dt.date(2027, 3, 10)), DEFAULT_POLICY)
    fired_before = {"before_7": steps[0].send_at}
    steps = plan(facts(dt.date(2027, 3, 10)), DEFAULT_POLICY, fired=fired_before)
    # Down from before the due date until after +10: only overdue_10 goes out.
    now = steps[3].send_at + dt.timedelta(hours=2)
    due = latest_due(steps, now)
    assert due is not None
    assert due.key == "overdue_10"
    # Once it fired nothing is due until the next step.
    fired = {**fired_before, "overdue_10": now}
    assert latest_due(plan(facts(dt.date(2027, 3, 10)), DEFAULT_POLICY, fired=fired), now) is None
    assert latest_due(steps, steps[0].send_at - dt.timedelta(seconds=1)) is None


def test_send_window_is_local_business_hours() -> None:
    window = DEFAULT_POLICY.send_window
    # Friday 2027-03-12 08:30 UTC = 09:30 Berlin (open), = 03:30 New York (closed).
    now = dt.datetime(2027, 3, 12, 8, 30, tzinfo=dt.UTC)
    assert in_send_window(now, window=window, timezone="Europe/Berlin", country="DE")
    assert not in_send_window(now, window=window, timezone="America/New_York", country="US")
    # Saturday, and Christmas Day: closed.
    sat = dt.datetime(2027, 3, 13, 10, 0, tzinfo=dt.UTC)
    assert not in_send_window(sat, window=window, timezone="Europe/Berlin", country="DE")
    xmas = dt.datetime(2026, 12, 25, 10, 0, tzinfo=dt.UTC)
    assert not in_send_window(xmas, window=window, timezone="Europe/Berlin", country="DE")


def test_no_fees_on_fees() -> None:
    from dataclasses import replace

    from dunning.domain.policy import Fee, Interest

    facts = InvoiceFacts(
        invoice_id="inv_fee",
        customer_id="cus_1",
        number="FEE-1",
        issue_date=dt.date(2026, 1, 1),
        due_date=dt.date(2026, 2, 2),
        total=40_00,
        balance=40_00,
        currency="EUR",
        timezone="Europe/Berlin",
        country="DE",
        kind="fee",
    )
    steps = list(DEFAULT_POLICY.steps)
    steps[-2] = steps[-2].model_copy(
        update={"fee": Fee(flat=10_00), "interest": Interest(annual_rate_bp=900)}
    )
    spec = DEFAULT_POLICY.model_copy(update={"steps": steps})
    fee_plan = plan(facts, spec)
    assert len(fee_plan) == len(plan(replace(facts, kind="standard"), spec))
    assert all(p.fee_amount == p.interest_amount == 0 for p in fee_plan)
    standard = plan(replace(facts, kind="standard"), spec)
    assert standard[-2].fee_amount > 0
    assert standard[-2].interest_amount > 0
