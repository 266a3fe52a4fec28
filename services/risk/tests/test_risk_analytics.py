"""DSO, ADD, CEI, aging and step recovery on a small book, against figures worked by hand.

The book (amounts in minor units; EUR unless said; terms 30 days):

    invoice  customer  issued      due         total      paid
    I1       A         2026-01-10  2026-02-09  1,000.00   in full 2026-02-05
    I2       B         2026-01-20  2026-02-19  2,000.00   1,200.00 on 2026-03-01
    I3       A         2026-02-05  2026-03-07  1,500.00   in full 2026-03-15
    I4       B         2026-02-25  2026-03-27    500.00   -
    I5       A         2026-03-10  2026-04-09  3,000.00   -
    I6       B         2026-03-20  2026-04-19  1,000.00   -
    I7       C (USD)   2026-03-01  2026-03-31    700.00   -

Reminders: step "overdue_7" for I2 on 2026-02-26; step "pre_due_3" for I3 on 2026-03-04.
"""

from __future__ import annotations

import datetime as dt

import httpx
from risk_kit import Script, d, feed
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

DAY = dt.timedelta(days=1)


async def _book(maker: async_sessionmaker[AsyncSession]) -> None:
    a, b, c = Script(), Script(), Script(currency="USD")
    for s in (a, b, c):
        s.customer()
    i1 = a.invoice(d("2026-01-10"), 1000_00)
    i2 = b.invoice(d("2026-01-20"), 2000_00)
    a.pay(i1, d("2026-02-05"))
    i3 = a.invoice(d("2026-02-05"), 1500_00)
    b.invoice(d("2026-02-25"), 500_00)
    b.reminder(d("2026-02-26"), "overdue_7", i2)
    b.pay(i2, d("2026-03-01"), amount=1200_00)
    a.reminder(d("2026-03-04"), "pre_due_3", i3)
    a.pay(i3, d("2026-03-15"))
    a.invoice(d("2026-03-10"), 3000_00)
    b.invoice(d("2026-03-20"), 1000_00)
    c.invoice(d("2026-03-01"), 700_00)
    await feed(maker, a.events + b.events + c.events)


async def test_dso_and_average_days_delinquent_by_hand(
    maker: async_sessionmaker[AsyncSession], client: httpx.AsyncClient
) -> None:
    await _book(maker)
    r = await client.get("/v1/analytics/dso", params={"as_of": "2026-03-31"})
    assert r.status_code == 200, r.text
    eur, usd = r.json()["rows"]
    # EUR receivables at 2026-03-31: I2 800.00 + I4 500.00 + I5 3,000.00 + I6 1,000.00
    #   = 5,300.00; not yet due (due on or after 03-31): I5 + I6 = 4,000.00.
    # Sales: March 4,000.00 (I5, I6), February 2,000.00 (I3, I4), January 3,000.00.
    # Countback: March's 4,000.00 fits in 5,300.00 -> 31 days, 1,300.00 left;
    #   February's 2,000.00 does not -> 28 x 1,300/2,000 = 18.2 days. DSO = 49.2.
    # Best possible DSO over 4,000.00: March's 4,000.00 fits exactly -> 31 days.
    # ADD = 49.2 - 31 = 18.2.
    assert eur["currency"] == "EUR"
    assert (eur["receivables"], eur["current_receivables"]) == (5300_00, 4000_00)
    assert eur["dso"] == 49.2
    assert eur["best_possible_dso"] == 31.0
    assert eur["average_days_delinquent"] == 18.2
    # USD is reported apart: 700.00 owed, March sales 700.00 -> 31 days, all current.
    assert (usd["currency"], usd["receivables"], usd["dso"], usd["average_days_delinquent"]) == (
        "USD", 700_00, 31.0, 0.0,
    )  # fmt: skip
    r = await client.get("/v1/analytics/delinquency", params={"as_of": "2026-03-31"})
    assert [row["average_days_delinquent"] for row in r.json()["rows"]] == [18.2, 0.0]


async def test_cei_by_hand(
    maker: async_sessionmaker[AsyncSession], client: httpx.AsyncClient
) -> None:
    await _book(maker)
    r = await client.get("/v1/analytics/cei", params={"from": "2026-03-01", "to": "2026-03-31"})
    assert r.status_code == 200, r.text
    eur = r.json()["rows"][0]
    # Opening (end of 02-28): I2 2,000.00 + I3 1,500.00 + I4 500.00 = 4,000.00 (I1 paid).
    # Credit sales in March: I5 3,000.00 + I6 1,000.00 = 4,000.00.
    # Closing: 5,300.00; closing current: 4,000.00.
    # CEI = (4,000 + 4,000 - 5,300) / (4,000 + 4,000 - 4,000) x 100 = 2,700 / 4,000 = 67.5%
    # (the 2,700.00 collected is I2's 1,200.00 and I3's 1,500.00).
    assert eur == {
        "currency": "EUR",
        "from": "2026-03-01",
        "to": "2026-03-31",
        "opening_receivables": 4000_00,
        "credit_sales": 4000_00,
        "closing_receivables": 5300_00,
        "closing_current_receivables": 4000_00,
        "collected": 2700_00,
        "cei": 67.5,
    }


async def test_aging_and_step_recovery(
    maker: async_sessionmaker[AsyncSession], client: httpx.AsyncClient
) -> None:
    await _book(maker)
    r = await client.get("/v1/analytics/aging", params={"as_of": "2026-03-31"})
    eur, usd = r.json()["rows"]
    # I2's 800.00 is 40 days past due, I4's 500.00 4 days; I5 and I6 are not due yet.
    assert (eur["current"], eur["1_30"], eur["31_60"], eur["61_90"], eur["over_90"]) == (
        4000_00, 500_00, 800_00, 0, 0,
    )  # fmt: skip
    assert (usd["current"], usd["total"]) == (700_00, 700_00)

    r = await client.get("/v1/analytics/step-recovery", params={"days": 7})
    rows = {row["step_key"]: row for row in r.json()["rows"]}
    # I2's reminder on 02-26 was followed by 1,200.00 on 03-01 (3 days); I3's on 03-04 by
    # a payment on 03-15, 11 days later: outside 7 days, inside 14.
    assert rows["overdue_7"]["reminders_followed_by_payment"] == 1
    assert rows["overdue_7"]["amount_recovered"] == 1200_00
    assert rows["pre_due_3"]["reminders_followed_by_payment"] == 0
    r = await client.get("/v1/analytics/step-recovery", params={"days": 14})
    rows = {row["step_key"]: row for row in r.json()["rows"]}
    assert rows["pre_due_3"]["amount_recovered"] == 1500_00


async def test_every_analytic_exports_csv(
    maker: async_sessionmaker[AsyncSession], client: httpx.AsyncClient
) -> None:
    await _book(maker)
    r = await client.get("/v1/analytics/dso", params={"as_of": "2026-03-31", "format": "csv"})
    assert r.headers["content-type"].startswith("text/csv")
    lines = r.text.splitlines()
    assert lines[0].startswith("currency,as_of,receivables,current_receivables")
    assert lines[1].startswith("EUR,2026-03-31,530000,400000")
    for path, params in (
        ("delinquency", {}),
        ("cei", {"from": "2026-03-01", "to": "2026-03-31"}),
        ("aging", {}),
        ("at-risk", {}),
        ("step-recovery", {"days": 7}),
    ):
        r = await client.get(f"/v1/analytics/{path}", params=params,
                             headers={"Accept": "text/csv"})  # fmt: skip
        assert r.status_code == 200, (path, r.text)
        assert r.headers["content-type"].startswith("text/csv"), path
        assert "attachment" in r.headers["content-disposition"]
        assert len(r.text.splitlines()) >= 2, (path, r.text)
