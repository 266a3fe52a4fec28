"""Demo data for a running stack: a realistic book written over the services' HTTP APIs.

`plan_book` is pure and deterministic (seeded random, dates relative to `today`): customers in
three time zones and currencies, their invoices over the last nine months, and what each
customer did about them (paid early, late, in part, by check then by card, bounced, disputed,
promised, answered). `write_book` sends it to the invoice API, then — once dunning and notify
have heard of the customers from invoice.events — promises to dunning and responses to notify.

Re-running is safe: every write carries a deterministic Idempotency-Key, and what already
exists from an earlier run (a 409 on its external id, a promise on the same invoices, a
customer with responses) is found and skipped instead of created twice.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import random
import secrets
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx
from rich.console import Console

from duewise_dev.postgres import database_url

#: (time zone, country, locale, currencies with weights) and the share of customers there.
ZONES: tuple[tuple[str, str, str, tuple[tuple[str, int], ...], float], ...] = (
    ("Europe/Berlin", "DE", "de-DE", (("EUR", 1),), 0.45),
    ("America/New_York", "US", "en-US", (("USD", 1),), 0.40),
    ("Asia/Tokyo", "JP", "ja-JP", (("JPY", 2), ("USD", 1)), 0.15),
)
#: How a customer behaves; the UI never sees this, only what follows from it.
PROFILES = {
    "prompt": 0.33,
    "slow": 0.24,
    "partial": 0.10,
    "deteriorating": 0.10,
    "switcher": 0.06,
    "delinquent": 0.10,
    "disputer": 0.07,
}
OWNERS = ("carol", "dave")
#: Usual methods per country (a switcher pays by check, then by card).
METHODS = {"DE": ("wire", "wire", "card"), "US": ("check", "ach", "ach", "card"), "JP": ("wire",)}
REVERSALS = {"check": "bounced_check", "ach": "ach_return", "card": "chargeback"}
USERS = (("admin", "admin"), ("carol", "collector"), ("dave", "collector"))

_NAMES = {
    "DE": (("Nordlicht", "Rhein", "Alpen", "Hanse", "Spree", "Elb", "Isar", "Main", "Berg",
            "Weser"),
           ("Maschinenbau", "Logistik", "Feinkost", "Elektro", "Druck", "Bau", "Medizintechnik",
            "Software", "Textil", "Metall"), ("GmbH", "AG", "GmbH & Co. KG")),
    "US": (("Hudson", "Liberty", "Empire", "Atlantic", "Keystone", "Pioneer", "Summit",
            "Harbor", "Union", "Granite"),
           ("Supply", "Freight", "Foods", "Electric", "Print", "Builders", "Health", "Software",
            "Apparel", "Steel"), ("Inc.", "LLC", "Corp.")),
    "JP": (("Sakura", "Fuji", "Hikari", "Midori", "Kaze", "Yama", "Umi", "Hoshi", "Taiyo",
            "Kawa"),
           ("Seiki", "Butsuryu", "Shokuhin", "Denki", "Insatsu", "Kensetsu", "Iryo", "Soft",
            "Sen-i", "Kinzoku"), ("K.K.", "Co., Ltd.")),
}  # fmt: skip
_LINES = ("Consulting services", "Spare parts", "Maintenance contract", "Freight and handling",
          "Software subscription", "Raw materials", "Installation", "Training day")  # fmt: skip
_DISPUTES = ("Quantity differs from delivery note", "Price differs from PO", "Goods damaged",
             "Service not delivered in full")  # fmt: skip
_NOTES = {
    "forgot": "AP clerk forgot to release it; paying this week.",
    "not_received": "Says the invoice never arrived; resent to AP.",
    "wrong_contact": "Invoices should go to the new AP mailbox.",
    "cash_flow": "Waiting for a large customer payment; asked for patience.",
    "refuses": "Disputes our terms and will not pay the late items.",
    "already_paid": "Claims it paid by check last week; asked for the check number.",
    "other": "Controller on holiday until next week.",
}


# --- the plan (pure) -------------------------------------------------------------------------


@dataclass
class InvoicePlan:
    ext: str
    number: str
    issue: dt.date
    due: dt.date
    total: int
    line: str
    balance: int = 0
    disputed: bool = False


@dataclass
class PaymentPlan:
    ext: str
    received: dt.date
    method: str
    amount: int
    invoice_ext: str
    reverse: str | None = None  # a reversal reason: the payment bounces


@dataclass
class CustomerPlan:
    ext: str
    name: str
    currency: str
    timezone: str
    country: str
    locale: str
    terms: int
    owner: str
    profile: str
    invoices: list[InvoicePlan] = field(default_factory=list)
    payments: list[PaymentPlan] = field(default_factory=list)
    disputes: list[tuple[str, str]] = field(default_factory=list)  # (invoice ext, reason)
    promise: tuple[list[str], int, int] | None = None  # (invoice exts, amount, days ahead)
    responses: list[tuple[str, str]] = field(default_factory=list)  # (reason, note)

    def body(self) -> dict[str, Any]:
        slug = self.ext.lower()
        contacts: list[dict[str, Any]] = [
            {"name": "Accounts Payable", "email": f"ap@{slug}.example", "role": "billing"},
            {"name": "Finance Director", "email": f"finance@{slug}.example", "role": "primary"},
        ]
        if self.country == "US":
            contacts[0]["phone"] = f"+1212555{int(self.ext[-4:]):04d}"
        return {
            "name": self.name,
            "external_id": self.ext,
            "currency": self.currency,
            "timezone": self.timezone,
            "country": self.country,
            "locale": self.locale,
            "payment_terms_days": self.terms,
            "owner": self.owner,
            "tags": ["demo"],
            "contacts": contacts,
        }


@dataclass
class Book:
    today: dt.date
    customers: list[CustomerPlan]

    def count(self) -> Counter[str]:
        c: Counter[str] = Counter(customers=len(self.customers))
        for cust in self.customers:
            c["invoices"] += len(cust.invoices)
            c["payments"] += len(cust.payments)
            c["reversals"] += sum(p.reverse is not None for p in cust.payments)
            c["disputes"] += len(cust.disputes)
            c["promises"] += cust.promise is not None
            c["responses"] += len(cust.responses)
        return c


def _pick(rng: random.Random, weights: Mapping[str, float]) -> str:
    return rng.choices(list(weights), weights=list(weights.values()))[0]


def _amount(rng: random.Random, currency: str, base: float) -> int:
    """A plausible invoice total in minor units (JPY has none), rounded like real prices."""
    major = base * rng.uniform(0.4, 1.6)
    if currency == "JPY":
        return max(1000, int(round(major * 150, -2)))
    return max(5000, int(round(major, -1)) * 100)


def _delay(rng: random.Random, profile: str, age: int) -> int:
    """Days after the due date the customer pays (negative: early); age = days since issue."""
    match profile:
        case "prompt" | "switcher":
            return rng.randint(-10, 3)
        case "slow" | "disputer":
            return rng.randint(3, 45)
        case "partial":
            return rng.randint(0, 30)
        case "deteriorating":
            return rng.randint(-5, 3) if age > 120 else rng.randint(25, 120)
        case _:  # delinquent
            return rng.randint(10, 45) if age > 210 else rng.randint(70, 250)


def plan_book(
    *, customers: int = 200, invoices: int = 2000, seed: int = 7, today: dt.date | None = None
) -> Book:
    """The whole demo book, deterministic for a given seed and day."""
    rng = random.Random(seed)
    today = today or dt.datetime.now(dt.UTC).date()
    weights = [rng.uniform(0.3, 1.7) for _ in range(customers)]
    scale = invoices / sum(weights)
    book = Book(today, [])
    seq = 0
    for i in range(customers):
        zone, country, locale, currencies, _ = rng.choices(ZONES, weights=[z[4] for z in ZONES])[0]
        currency = rng.choices([c for c, _ in currencies], weights=[w for _, w in currencies])[0]
        first, second, suffix = _NAMES[country]
        cust = CustomerPlan(
            ext=f"DEMO-C{i + 1:04d}",
            name=f"{rng.choice(first)} {rng.choice(second)} {rng.choice(suffix)}",
            currency=currency,
            timezone=zone,
            country=country,
            locale=locale,
            terms=rng.choice((14, 30, 30, 30, 45, 60)),
            owner=OWNERS[0] if rng.random() < 0.55 else OWNERS[1],
            profile=_pick(rng, PROFILES),
        )
        base = rng.lognormvariate(7.5, 0.9)  # ~1,800 a typical invoice, a long tail above
        usual = rng.choice(METHODS[country])
        n = max(1, round(weights[i] * scale))
        for day in sorted(rng.randint(0, 270) for _ in range(n)):
            seq += 1
            issue = today - dt.timedelta(days=270 - day)
            total = _amount(rng, currency, base)
            inv = InvoicePlan(
                ext=f"DEMO-I{seq:05d}",
                number=f"{country}-{issue:%y%m}-{seq:05d}",
                issue=issue,
                due=issue + dt.timedelta(days=cust.terms),
                total=total,
                line=rng.choice(_LINES),
                balance=total,
            )
            cust.invoices.append(inv)
            _pay(rng, cust, inv, usual, today)
        _disputes_promises_responses(rng, cust, today)
        book.customers.append(cust)
    return book


def _pay(
    rng: random.Random, cust: CustomerPlan, inv: InvoicePlan, usual: str, today: dt.date
) -> None:
    """What the customer paid on the invoice, by when and how."""
    age = (today - inv.issue).days
    paid_on = max(
        inv.issue + dt.timedelta(days=1), inv.due + dt.timedelta(_delay(rng, cust.profile, age))
    )
    if paid_on >= today:
        return  # not paid yet
    method = usual
    if cust.profile == "switcher":
        method = "card" if (today - paid_on).days < 50 else "check"
    parts = [inv.total]
    if cust.profile == "partial" or rng.random() < 0.05:
        first = round(inv.total * rng.uniform(0.3, 0.7))
        parts = [first, inv.total - first] if rng.random() < 0.5 else [first]
    when = paid_on
    for k, amount in enumerate(parts):
        if when >= today:
            break
        bounce = REVERSALS.get(method) if rng.random() < 0.03 else None
        cust.payments.append(
            PaymentPlan(f"{inv.ext}-P{k + 1}", when, method, amount, inv.ext, bounce)
        )
        if bounce is None:
            inv.balance -= amount
        when += dt.timedelta(days=rng.randint(15, 40))


def _disputes_promises_responses(rng: random.Random, cust: CustomerPlan, today: dt.date) -> None:
    overdue = [i for i in cust.invoices if i.balance > 0 and i.due < today]
    if cust.profile == "disputer" and overdue:
        for inv in rng.sample(overdue, k=min(len(overdue), rng.randint(1, 2))):
            inv.disputed = True
            cust.disputes.append((inv.ext, rng.choice(_DISPUTES)))
        cust.responses.append(("dispute", "Disputes the delivery; waiting for our proof."))
    # Promised: overdue invoices nothing was ever paid on. Dunning hears of the history after
    # the seed's promise may be recorded, and counts a payment it hears of later towards it.
    touched = {p.invoice_ext for p in cust.payments}
    free = [i for i in overdue if not i.disputed and i.ext not in touched]
    if free and cust.profile != "prompt" and rng.random() < 0.35:
        chosen = free[: rng.randint(1, min(3, len(free)))]
        days = rng.randint(1, 14)
        cust.promise = ([i.ext for i in chosen], sum(i.balance for i in chosen), days)
        by = today + dt.timedelta(days=days)
        cust.responses.append(("promise", f"Promised to pay {len(chosen)} invoice(s) by {by}."))
    elif free and cust.profile == "delinquent":
        reason = rng.choice(("cash_flow", "cash_flow", "refuses"))
        cust.responses.append((reason, _NOTES[reason]))
    elif free and rng.random() < 0.2:
        reason = rng.choice(("forgot", "not_received", "wrong_contact", "already_paid", "other"))
        cust.responses.append((reason, _NOTES[reason]))


# --- writing it over HTTP ----------------------------------------------------------------------


class SeedError(RuntimeError):
    """A service refused a write the seed cannot work around; the message says which."""


@dataclass
class Urls:
    invoice: str = "http://127.0.0.1:8001"
    dunning: str = "http://127.0.0.1:8002"
    risk: str = "http://127.0.0.1:8003"
    notify: str = "http://127.0.0.1:8004"


@dataclass
class Report:
    created: Counter[str] = field(default_factory=Counter)
    existing: Counter[str] = field(default_factory=Counter)
    users: dict[str, str] = field(default_factory=dict)  # name -> password, or a note
    seconds: float = 0.0


class Writer:
    """Writes a book with one admin token; `key` makes each write's Idempotency-Key."""

    def __init__(
        self,
        clients: Mapping[str, httpx.AsyncClient],
        book: Book,
        *,
        concurrency: int = 8,
        wait_s: float = 90.0,
        progress: Callable[[str], None] = lambda _: None,
    ) -> None:
        self.c = clients
        self.book = book
        self.concurrency = concurrency
        self.wait_s = wait_s
        self.progress = progress
        self.report = Report()
        self.ids: dict[str, str] = {}  # external id -> service id

    def _count(self, what: str, existed: bool) -> None:
        (self.report.existing if existed else self.report.created)[what] += 1

    def key(self, what: str) -> str:
        return f"demo-seed:{self.book.today}:{what}"

    async def _post(
        self, service: str, path: str, body: dict[str, Any], key: str
    ) -> tuple[int, dict[str, Any], bool]:
        """The status and body of a POST (retried on 429/502/503 or no connection), and whether
        it was an Idempotency-Key replay of an earlier run's answer."""
        for attempt in range(5):
            try:
                r = await self.c[service].post(path, json=body, headers={"Idempotency-Key": key})
            except httpx.TransportError:
                if attempt == 4:
                    raise
                await asyncio.sleep(0.5 * (attempt + 1))
                continue
            if r.status_code in (429, 502, 503) and attempt < 4:
                await asyncio.sleep(0.5 * (attempt + 1))
                continue
            try:
                doc = r.json() if r.content else {}
            except ValueError:  # not JSON: a proxy's or a crashed app's page
                doc = {"body": r.text[:300]}
            return r.status_code, doc, r.headers.get("Idempotent-Replayed") == "true"
        raise AssertionError("unreachable")

    async def _create(
        self, what: str, path: str, body: dict[str, Any], lookup: str | None = None
    ) -> str:
        """POST to the invoice API; on 409 (made by an earlier run) find it by external id."""
        status, doc, replayed = await self._post(
            "invoice", path, body, self.key(body["external_id"])
        )
        if status == 201:
            self._count(what, replayed)
            return str(doc["id"])
        if status == 422 and str(doc.get("type", "")).endswith("idempotency-key-reused"):
            # Keys are per day and external id: a book of another size or seed planned these
            # records differently earlier today.
            raise SeedError(
                "a demo book with other --customers/--invoices/--seed was written here today; "
                "run the seed again with the same options (it then adds nothing)"
            )
        if status == 409 and lookup is not None:
            r = await self.c["invoice"].get(lookup, params={"external_id": body["external_id"]})
            items = r.json().get("items", []) if r.status_code == 200 else []
            if items:
                self.report.existing[what] += 1
                return str(items[0]["id"])
        raise SeedError(f"invoice {path} answered {status}: {doc}")

    async def write(self) -> Report:
        """Every customer's invoice history, a few customers at a time; each customer's promise
        and responses as soon as dunning and notify have heard of it. Customers that have
        those go first, so that the consumers reach them first."""
        started = time.monotonic()
        gate = asyncio.Semaphore(self.concurrency)
        total, done = len(self.book.customers), 0
        order = sorted(self.book.customers, key=lambda c: not (c.promise or c.responses))

        async def one(cust: CustomerPlan, group: asyncio.TaskGroup) -> None:
            nonlocal done
            async with gate:
                await self._customer(cust)
            done += 1
            if done % 25 == 0 or done == total:
                self.progress(f"invoice: {done}/{total} customers written")
            if cust.promise or cust.responses:
                group.create_task(self._after(cust))

        try:
            async with asyncio.TaskGroup() as group:
                for cust in order:
                    group.create_task(one(cust, group))
        except ExceptionGroup as failed:  # the first failure cancelled the rest
            raise failed.exceptions[0] from None
        self.report.seconds = time.monotonic() - started
        return self.report

    async def _customer(self, cust: CustomerPlan) -> None:
        cid = await self._create("customers", "/v1/customers", cust.body(), "/v1/customers")
        self.ids[cust.ext] = cid
        # Issued and paid in the order it happened, so that risk folds a true history.
        steps: list[tuple[dt.date, int, InvoicePlan | PaymentPlan]] = [
            *((i.issue, 0, i) for i in cust.invoices),
            *((p.received, 1, p) for p in cust.payments),
        ]
        paid: dict[str, str] | None = None
        for _, _, step in sorted(steps, key=lambda s: (s[0], s[1])):
            body: dict[str, Any]
            if isinstance(step, InvoicePlan):
                body = {
                    "customer_id": cid,
                    "number": step.number,
                    "external_id": step.ext,
                    "issue_date": step.issue.isoformat(),
                    "due_date": step.due.isoformat(),
                    "currency": cust.currency,
                    "lines": [{"description": step.line, "quantity": 1, "unit_price": step.total}],
                }
                self.ids[step.ext] = await self._create(
                    "invoices", "/v1/invoices", body, "/v1/invoices"
                )
                continue
            body = {
                "customer_id": cid,
                "external_id": step.ext,
                "amount": step.amount,
                "currency": cust.currency,
                "method": step.method,
                "received_at": step.received.isoformat(),
                "reference": f"{step.method.upper()} {step.ext[-9:]}",
                "allocations": [{"invoice_id": self.ids[step.invoice_ext], "amount": step.amount}],
            }
            status, doc, replayed = await self._post(
                "invoice", "/v1/payments", body, self.key(step.ext)
            )
            if status == 201:
                self._count("payments", replayed)
                pid = str(doc["id"])
            elif status == 409:
                paid = paid if paid is not None else await self._payments(cid)
                if step.ext not in paid:
                    raise SeedError(f"invoice /v1/payments answered 409: {doc}")
                self.report.existing["payments"] += 1
                pid = paid[step.ext]
            else:
                raise SeedError(f"invoice /v1/payments answered {status}: {doc}")
            if step.reverse:
                status, doc, replayed = await self._post(
                    "invoice",
                    f"/v1/payments/{pid}/reverse",
                    {"reason": step.reverse, "note": "returned by the bank"},
                    self.key(f"{step.ext}-reverse"),
                )
                if status not in (200, 409):
                    raise SeedError(f"invoice reverse answered {status}: {doc}")
                self._count("reversals", status == 409 or replayed)
        for inv_ext, reason in cust.disputes:
            status, doc, replayed = await self._post(
                "invoice",
                f"/v1/invoices/{self.ids[inv_ext]}/disputes",
                {"reason": reason},
                self.key(f"{inv_ext}-dispute"),
            )
            if status not in (201, 409):
                raise SeedError(f"invoice disputes answered {status}: {doc}")
            self._count("disputes", status == 409 or replayed)

    async def _payments(self, customer_id: str) -> dict[str, str]:
        """The customer's payments made earlier, external id -> id."""
        found: dict[str, str] = {}
        params: dict[str, Any] = {"customer_id": customer_id, "limit": 200}
        while True:
            page = (await self.c["invoice"].get("/v1/payments", params=params)).json()
            found |= {p["external_id"]: p["id"] for p in page["items"] if p.get("external_id")}
            if not page.get("next_cursor"):
                return found
            params["cursor"] = page["next_cursor"]

    async def _after(self, cust: CustomerPlan) -> None:
        """The promise (dunning) and responses (notify), once those services know the customer."""
        cid = self.ids[cust.ext]
        if cust.promise is not None:
            exts, amount, days = cust.promise
            invoice_ids = [self.ids[e] for e in exts]
            await self._until_known("dunning", "GET", f"/v1/customers/{cid}/stage")
            r = await self._until_known("dunning", "GET", "/v1/promises", {"customer_id": cid})
            if any(p["invoice_ids"] == invoice_ids for p in r.json()["items"]):
                self.report.existing["promises"] += 1
            else:
                body = {
                    "customer_id": cid,
                    "invoice_ids": invoice_ids,
                    "amount": amount,
                    "promised_date": (self.book.today + dt.timedelta(days=days)).isoformat(),
                }
                r = await self._until_known(
                    "dunning", "POST", "/v1/promises", body, self.key(f"{cust.ext}-promise")
                )
                self._count("promises", r.headers.get("Idempotent-Replayed") == "true")
        if cust.responses:
            r = await self.c["notify"].get("/v1/responses", params={"customer_id": cid, "limit": 1})
            if r.status_code == 200 and r.json()["items"]:
                self.report.existing["responses"] += len(cust.responses)
                return
            for n, (reason, note) in enumerate(cust.responses):
                body = {"customer_id": cid, "reason": reason, "note": note}
                key = self.key(f"{cust.ext}-response-{n}")
                await self._until_known("notify", "POST", "/v1/responses", body, key)
                self.report.created["responses"] += 1

    async def _until_known(
        self,
        service: str,
        method: str,
        path: str,
        data: dict[str, Any] | None = None,
        key: str | None = None,
    ) -> httpx.Response:
        """The 2xx answer to a request about a customer, retried while `service` has not yet
        heard of the customer or its invoices from invoice.events (404, or 422 "Unknown …"):
        its consumer is still catching up."""
        deadline = time.monotonic() + self.wait_s
        client = self.c[service]
        while True:
            if method == "GET":
                r = await client.get(path, params=data)
            else:
                r = await client.post(path, json=data, headers={"Idempotency-Key": key or ""})
            if 200 <= r.status_code < 300:
                return r
            unknown = r.status_code == 404 or (
                r.status_code == 422 and str(r.json().get("title", "")).startswith("Unknown")
            )
            if not unknown or time.monotonic() > deadline:
                hint = f" (after {self.wait_s:.0f} s: is its consumer running?)" if unknown else ""
                raise SeedError(
                    f"{service} {method} {path} answered {r.status_code}{hint}: {r.text[:300]}"
                )
            await asyncio.sleep(0.5)


# --- users ---------------------------------------------------------------------------------------


def demo_password(name: str, environ: Mapping[str, str] = os.environ) -> str:
    """`demo-<name>` on a local stack; a random one anywhere DUEWISE_ENV says production."""
    if environ.get("DUEWISE_ENV", "local") == "production":
        return secrets.token_urlsafe(12)
    return f"demo-{name}"


async def create_users(
    *, urls: Urls, admin_token: str, notify_db_url: str, environ: Mapping[str, str] = os.environ
) -> dict[str, str]:
    """admin, carol and dave as UI users; name -> the password, or a note when the user
    existed already (its password is left as it was).

    The code of `python -m notify.ui.users create` (each user's own service tokens, minted
    with the admin token), run in this process: a subprocess per user costs seconds of imports.
    """
    from duewise_service.db import make_engine, make_sessionmaker
    from notify.config import Settings
    from notify.ui.tables import UI_USER
    from notify.ui.users import REMOTE, create_user
    from sqlalchemy import select
    from sqlalchemy.exc import SQLAlchemyError

    # The running notify's secret (NOTIFY_SECRET_KEY) seals the tokens: read from the same env.
    settings = Settings(database_url=notify_db_url)
    service_urls = {"invoice": urls.invoice, "dunning": urls.dunning, "risk": urls.risk}
    engine = make_engine(settings.sqlalchemy_url, pool_size=1)
    result: dict[str, str] = {}
    try:
        async with httpx.AsyncClient(timeout=30) as http:
            for name, role in USERS:
                async with make_sessionmaker(engine)() as session, session.begin():
                    known = select(UI_USER.c.user_name).where(UI_USER.c.user_name == name)
                    if await session.scalar(known) is not None:
                        result[name] = "(existed already; password unchanged)"
                        continue
                    password = demo_password(name, environ)
                    await create_user(
                        session=session,
                        http=http,
                        urls=service_urls,
                        admin_tokens=dict.fromkeys(REMOTE, admin_token),
                        secret=settings.secret_key.get_secret_value(),
                        user_name=name,
                        role=role,
                        password=password,
                        display_name=name.title(),
                    )
                    result[name] = password
    except (RuntimeError, OSError, httpx.HTTPError, SQLAlchemyError) as exc:
        raise SeedError(f"creating the UI users failed: {exc}") from exc
    finally:
        await engine.dispose()
    return result


def notify_database_url(environ: Mapping[str, str] = os.environ) -> str:
    """Where `make run` keeps notify's tables: NOTIFY_DATABASE_URL, else notify's database on
    DATABASE_URL's server, else on the embedded server (DUEWISE_PG_PORT, 5442)."""
    if url := environ.get("NOTIFY_DATABASE_URL"):
        return url
    server = environ.get("DATABASE_URL") or (
        f"postgresql://postgres@127.0.0.1:{environ.get('DUEWISE_PG_PORT', '5442')}/postgres"
    )
    return database_url(server, "duewise_notify")


async def seed(
    *,
    urls: Urls,
    admin_token: str,
    book: Book,
    users: bool = True,
    notify_db_url: str | None = None,
    concurrency: int = 8,
    wait_s: float = 90.0,
    progress: Callable[[str], None] = lambda _: None,
) -> Report:
    """Write `book` to the stack at `urls`, then create the UI users."""
    headers = {"Authorization": f"Bearer {admin_token}"}
    limits = httpx.Limits(max_connections=concurrency * 2)
    async with (
        httpx.AsyncClient(base_url=urls.invoice, headers=headers, timeout=30, limits=limits) as inv,
        httpx.AsyncClient(base_url=urls.dunning, headers=headers, timeout=30, limits=limits) as dun,
        httpx.AsyncClient(base_url=urls.notify, headers=headers, timeout=30, limits=limits) as ntf,
    ):
        for name, client in (("invoice", inv), ("dunning", dun), ("notify", ntf)):
            try:
                r = await client.get("/healthz")
            except httpx.TransportError as exc:
                raise SeedError(
                    f"{name} is not reachable at {client.base_url} (is `make run` running?)"
                ) from exc
            if r.status_code != 200:
                raise SeedError(
                    f"{name} at {client.base_url} does not answer /healthz ({r.status_code})"
                )
        writer = Writer(
            {"invoice": inv, "dunning": dun, "notify": ntf},
            book,
            concurrency=concurrency,
            wait_s=wait_s,
            progress=progress,
        )
        report = await writer.write()
    if users:
        progress("creating the UI users")
        report.users = await create_users(
            urls=urls, admin_token=admin_token, notify_db_url=notify_db_url or notify_database_url()
        )
    return report


def print_report(console: Console, report: Report, notify_url: str) -> None:
    """What was written, what was there already, and how to sign in."""
    kinds = ("customers", "invoices", "payments", "reversals", "disputes", "promises", "responses")
    made = ", ".join(f"{report.created[k]} {k}" for k in kinds)
    console.print(f"[bold]demo book written[/] in {report.seconds:.0f} s: {made}")
    if any(report.existing.values()):
        there = ", ".join(f"{report.existing[k]} {k}" for k in kinds if report.existing[k])
        console.print(f"already there from an earlier run: {there}")
    if report.users:
        console.print(f"[bold]collector UI[/] {notify_url}/  sign in as:")
        for name, password in report.users.items():
            console.print(f"  {name:<6} {password}", highlight=False)
