"""Dashboards over the whole book: aging, DSO and CEI over time, the balance at risk, the
reasons customers give, and which dunning step recovered the money.

The numbers come from the risk service's analytics (`/v1/analytics/*`) and notify's
responses; each chart is an SVG drawn here, beside the same numbers as a table, and the
table is the chart's CSV download (`/dashboards/<chart>.csv`): amounts in minor units with
their currency, as the services give them."""

from __future__ import annotations

import datetime as dt
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from fastapi import APIRouter, Request
from markupsafe import Markup
from starlette.responses import Response

from notify.render.formatting import currency_precision, format_money
from notify.ui.charts import Table, bar_chart, line_chart
from notify.ui.clients import Api, ServiceError, gather_limited
from notify.ui.pages import SECURITY_HEADERS, render
from notify.ui.web import CurrentUser, PageError, api_for

router = APIRouter(include_in_schema=False)
BUCKETS = ("current", "1_30", "31_60", "61_90", "over_90")
MONTHS = 6
RECOVERY_DAYS = 7
#: Risk's analytics read the whole receivables ledger (seconds with a million invoices):
#: they get longer than the UI's usual service timeout, and the charts are then cached.
ANALYTICS_TIMEOUT_S = 60.0


@dataclass
class Chart:
    key: str
    title: str
    note: str
    svg: Markup
    table: Table
    #: The table as shown (money formatted); `table` keeps the raw numbers for the CSV.
    shown: list[list[str]]


def _major(amount: int, currency: str) -> float:
    """For drawing only (bar heights); amounts stay integers everywhere else."""
    digits: int = currency_precision(currency)
    return float(amount) / float(10**digits)


def _money(amount: int | None, currency: str) -> str:
    return "—" if amount is None else format_money(int(amount), currency, "en-US")


def _num(value: object, suffix: str = "") -> str:
    return "—" if value is None else f"{value}{suffix}"


def months_back(today: dt.date, n: int = MONTHS) -> list[tuple[dt.date, dt.date]]:
    """The last `n` calendar months as (first day, last day — or today for this month)."""
    out = []
    year, month = today.year, today.month
    for _ in range(n):
        start = dt.date(year, month, 1)
        nxt = dt.date(year + (month == 12), month % 12 + 1, 1)
        out.append((start, min(nxt - dt.timedelta(days=1), today)))
        year, month = (year - 1, 12) if month == 1 else (year, month - 1)
    return out[::-1]


async def aging(api: Api, today: dt.date) -> Chart:
    rows = (await api.get("risk", "/v1/analytics/aging", wait_s=ANALYTICS_TIMEOUT_S))["rows"]
    columns = ["currency", "as_of", *BUCKETS, "total"]
    table = Table(columns, [[r.get(c) for c in columns] for r in rows])
    shown = [
        [r["currency"], r["as_of"], *(_money(r[b], r["currency"]) for b in (*BUCKETS, "total"))]
        for r in rows
    ]
    series = {r["currency"]: [_major(r[b], r["currency"]) for b in BUCKETS] for r in rows}
    labels = [b.replace("_", "-") if b[0].isdigit() else b.replace("_", " ") for b in BUCKETS]
    svg = bar_chart("Open balance by days past due", labels, series)
    note = "Open balance by days past due, per currency (in major units on the chart)."
    return Chart("aging", "Aging buckets", note, svg, table, shown)


async def dso(api: Api, today: dt.date) -> Chart:
    ends = [end for _, end in months_back(today)]
    answers = await gather_limited(
        api.get("risk", "/v1/analytics/dso", {"as_of": d.isoformat()}, wait_s=ANALYTICS_TIMEOUT_S)
        for d in ends
    )
    columns = ["as_of", "currency", "dso", "best_possible_dso", "average_days_delinquent"]
    table = Table(columns)
    by_currency: dict[str, dict[str, float | None]] = {}
    for answer in answers:
        if isinstance(answer, ServiceError):
            raise answer
        for r in answer["rows"]:
            table.rows.append([r.get(c) for c in columns])
            by_currency.setdefault(r["currency"], {})[r["as_of"]] = r.get("dso")
    labels = [d.isoformat()[:7] for d in ends]
    series = {
        f"DSO {cur}": [vals.get(d.isoformat()) for d in ends] for cur, vals in by_currency.items()
    }
    svg = line_chart("Days sales outstanding at each month end", labels, series)
    shown = [[_num(v) for v in row] for row in table.rows]
    note = "Days sales outstanding (countback) at each month's end, per currency."
    return Chart("dso", "DSO over time", note, svg, table, shown)


async def cei(api: Api, today: dt.date) -> Chart:
    months = months_back(today)
    answers = await gather_limited(
        api.get(
            "risk",
            "/v1/analytics/cei",
            {"from": s.isoformat(), "to": e.isoformat()},
            wait_s=ANALYTICS_TIMEOUT_S,
        )
        for s, e in months
    )
    columns = ["month", "currency", "from", "to", "collected", "cei"]
    table = Table(columns)
    shown: list[list[str]] = []
    by_currency: dict[str, dict[str, float | None]] = {}
    for (start, _), answer in zip(months, answers, strict=True):
        if isinstance(answer, ServiceError):
            raise answer
        month = start.isoformat()[:7]
        for r in answer["rows"]:
            table.rows.append([month, r["currency"], r["from"], r["to"], r["collected"], r["cei"]])
            shown.append(
                [
                    month,
                    r["currency"],
                    r["from"],
                    r["to"],
                    _money(r["collected"], r["currency"]),
                    _num(r["cei"], " %"),
                ]
            )
            by_currency.setdefault(r["currency"], {})[month] = r["cei"]
    labels = [s.isoformat()[:7] for s, _ in months]
    series = {f"CEI {c}": [v.get(m) for m in labels] for c, v in by_currency.items()}
    svg = line_chart("Collection effectiveness index per month (%)", labels, series)
    note = "Collection effectiveness index per month: what was collected of what could be."
    return Chart("cei", "CEI over time", note, svg, table, shown)


async def at_risk(api: Api, today: dt.date) -> Chart:
    rows = (await api.get("risk", "/v1/analytics/at-risk", wait_s=ANALYTICS_TIMEOUT_S))["rows"]
    columns = [
        "currency",
        "open_balance",
        "at_risk_balance",
        "critical_balance",
        "at_risk_customers",
        "at_risk_share",
    ]
    table = Table(columns, [[r.get(c) for c in columns] for r in rows])
    shown = [
        [
            r["currency"],
            _money(r["open_balance"], r["currency"]),
            _money(r["at_risk_balance"], r["currency"]),
            _money(r["critical_balance"], r["currency"]),
            str(r["at_risk_customers"]),
            "—" if r["at_risk_share"] is None else f"{r['at_risk_share'] * 100:.1f} %",
        ]
        for r in rows
    ]
    labels = [r["currency"] for r in rows]
    series = {
        name: [_major(r[key], r["currency"]) for r in rows]
        for name, key in (
            ("open", "open_balance"),
            ("high and critical", "at_risk_balance"),
            ("critical", "critical_balance"),
        )
    }
    svg = bar_chart("Open balance and the part at risk", labels, series)
    note = "Open balance of the customers in the high and critical risk bands."
    return Chart("at-risk", "Balance at risk", note, svg, table, shown)


async def reasons(api: Api, today: dt.date) -> Chart:
    months = [s.isoformat()[:7] for s, _ in months_back(today)]
    items = await api.all_pages("notify", "/v1/responses")
    counts = Counter(
        (r["logged_at"][:7], r["reason"]) for r in items if r["logged_at"][:7] in months
    )
    names = sorted({reason for _, reason in counts})
    table = Table(
        ["month", "reason", "responses"],
        [[m, n, counts[(m, n)]] for m in months for n in names if counts[(m, n)]],
    )
    series = {n.replace("_", " "): [float(counts[(m, n)]) for m in months] for n in names}
    svg = bar_chart("Responses per month, by reason", months, series)
    shown = [[str(m), str(n).replace("_", " "), str(c)] for m, n, c in table.rows]
    note = "What customers said, per month (collectors' log and the reply links)."
    return Chart("reasons", "Response reasons over time", note, svg, table, shown)


async def recovery(api: Api, today: dt.date) -> Chart:
    answer = await api.get(
        "risk",
        "/v1/analytics/step-recovery",
        {"days": RECOVERY_DAYS},
        wait_s=ANALYTICS_TIMEOUT_S,
    )
    rows = answer["rows"]
    columns = [
        "step_key",
        "days",
        "reminders",
        "currency",
        "reminders_followed_by_payment",
        "amount_recovered",
        "recovery_rate",
    ]
    table = Table(columns, [[r.get(c) for c in columns] for r in rows])
    shown = [
        [
            str(r["step_key"]),
            str(r["days"]),
            str(r["reminders"]),
            str(r.get("currency") or "—"),
            str(r["reminders_followed_by_payment"]),
            _money(r["amount_recovered"], r["currency"]) if r.get("currency") else "—",
            f"{float(r['recovery_rate'] or 0) * 100:.1f} %",
        ]
        for r in rows
    ]
    steps = list(dict.fromkeys(str(r["step_key"]) for r in rows))
    currencies = sorted({str(r["currency"]) for r in rows if r.get("currency")})
    series = {
        f"recovered {c} (%)": [
            next(
                (
                    float(r["recovery_rate"] or 0) * 100
                    for r in rows
                    if r["step_key"] == s and r.get("currency") == c
                ),
                None,
            )
            for s in steps
        ]
        for c in currencies
    }
    svg = bar_chart(
        f"Reminders followed by a payment within {RECOVERY_DAYS} days",
        steps,
        series,
        fmt=lambda v: f"{v:.0f} %",
    )
    note = f"Which dunning step recovered the money: payments within {RECOVERY_DAYS} days."
    return Chart("step-recovery", "Which step recovered the money", note, svg, table, shown)


CHARTS: dict[str, Callable[[Api, dt.date], Awaitable[Chart]]] = {
    "aging": aging,
    "dso": dso,
    "cei": cei,
    "at-risk": at_risk,
    "reasons": reasons,
    "step-recovery": recovery,
}
TITLES = {
    "aging": "Aging buckets",
    "dso": "DSO over time",
    "cei": "CEI over time",
    "at-risk": "Balance at risk",
    "reasons": "Response reasons over time",
    "step-recovery": "Which step recovered the money",
}


#: Charts are over the whole book and move slowly: each is computed at most once a minute
#: per role (the risk analytics behind DSO and CEI read the whole receivables ledger).
CACHE_SECONDS = 60.0
ChartCache = dict[tuple[str, str, dt.date], tuple[float, Chart]]


def chart_cache(request: Request) -> ChartCache:
    """This app's cache of charts (on app.state: one per running app)."""
    cache: ChartCache | None = getattr(request.app.state, "dashboard_cache", None)
    if cache is None:
        cache = request.app.state.dashboard_cache = {}
    return cache


async def cached(cache: ChartCache, key: str, api: Api, today: dt.date) -> Chart:
    """The chart `key`, from `cache` when younger than CACHE_SECONDS. Failures are never
    cached: the next request asks the service again."""
    slot = (key, api.user.role, today)
    hit = cache.get(slot)
    now = time.monotonic()
    if hit is not None and now - hit[0] < CACHE_SECONDS:
        return hit[1]
    chart = await CHARTS[key](api, today)
    cache[slot] = (now, chart)
    for old in [k for k, (at, _) in cache.items() if now - at >= CACHE_SECONDS]:
        del cache[old]
    return chart


@router.get("/dashboards")
async def dashboards_page(request: Request, user: CurrentUser) -> Response:
    """Every chart; a chart whose service failed says so in one sentence, the others show."""
    api = api_for(request, user)
    today = dt.datetime.now(dt.UTC).date()
    cache = chart_cache(request)
    results = await gather_limited((cached(cache, key, api, today) for key in CHARTS), limit=3)
    charts = []
    for key, result in zip(CHARTS, results, strict=True):
        problem = result.sentence if isinstance(result, ServiceError) else None
        charts.append(
            {
                "key": key,
                "title": TITLES[key],
                "chart": None if problem else result,
                "problem": problem,
            }
        )
    return render(request, "dashboards.html", {"user": user, "charts": charts, "today": today})


@router.get("/dashboards/{key}.csv")
async def chart_csv(request: Request, key: str, user: CurrentUser) -> Response:
    """One chart's table as CSV (the numbers on the page, amounts in minor units)."""
    build = CHARTS.get(key)
    if build is None:
        raise PageError("There is no such chart.", 404, user)
    try:
        chart = await build(api_for(request, user), dt.datetime.now(dt.UTC).date())
    except ServiceError as exc:
        raise PageError(exc.sentence, exc.status, user) from exc
    return Response(
        chart.table.csv(),
        media_type="text/csv; charset=utf-8",
        headers={
            **SECURITY_HEADERS,
            "Content-Disposition": f'attachment; filename="{key}.csv"',
        },
    )
