"""What the pages show, assembled from the services' answers (no AR data is kept here)."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from notify.ui.accounts import SignedIn
from notify.ui.clients import Api, ServiceError, gather_limited
from notify.ui.tables import UI_ACTION

#: What the services' ids look like (`cus_0192…`): anything else is refused before a call, so
#: a path parameter can never carry a query, a fragment or `..` into a service's URL.
SAFE_ID = re.compile(r"^[A-Za-z0-9_-]{1,100}$")
BAND_RANK = {"critical": 0, "high": 1, "medium": 2, "low": 3}


def local_today(timezone: str) -> dt.date:
    """Today in the customer's time zone (UTC when the zone is unknown)."""
    try:
        return dt.datetime.now(ZoneInfo(timezone)).date()
    except (ZoneInfoNotFoundError, ValueError):
        return dt.datetime.now(dt.UTC).date()


class NotYours(Exception):
    """The customer does not exist, or belongs to another collector (both look the same)."""


def may_see(user: SignedIn, customer: dict[str, Any]) -> bool:
    """Admins see every customer; a collector only those it owns."""
    return user.is_admin or customer.get("owner") == user.user_name


@dataclass
class WorkRow:
    id: str
    name: str
    owner: str | None
    currency: str
    band: str | None
    score: int | None
    overdue: int
    open: int
    stage: str | None
    on_hold: bool
    broken_promises: int
    disputed: bool
    promise_pending: bool
    problems: list[str] = field(default_factory=list)

    @property
    def pushed_down(self) -> bool:
        """Under dispute or waiting on a promise: worked after the others."""
        return self.disputed or self.promise_pending

    def sort_key(self) -> tuple[bool, int, int, str]:
        return (self.pushed_down, BAND_RANK.get(self.band or "", 4), -self.overdue, self.name)


@dataclass
class WorkList:
    rows: list[WorkRow]
    #: False when the customer list was cut at MAX_PAGES pages (the page says so).
    complete: bool
    customers_read: int


async def promises_recorded(
    session: AsyncSession, customer_ids: list[str] | None = None
) -> list[dict[str, Any]]:
    """Promises to pay recorded through the UI (dunning's answers, from the audit log)."""
    stmt = (
        select(UI_ACTION.c.at, UI_ACTION.c.user_name, UI_ACTION.c.customer_id, UI_ACTION.c.result)
        .where(UI_ACTION.c.kind == "promise", UI_ACTION.c.status == 201)
        .order_by(UI_ACTION.c.at.desc())
    )
    if customer_ids is not None:
        stmt = stmt.where(UI_ACTION.c.customer_id.in_(customer_ids))
    promises: dict[str, dict[str, Any]] = {}
    for r in (await session.execute(stmt)).all():
        result: dict[str, Any] = r.result or {}
        # A form sent twice replays dunning's first answer: one promise, two audit rows.
        promises.setdefault(
            result["id"],
            {
                **result,
                "recorded_at": r.at,
                "recorded_by": r.user_name,
                "customer_id": r.customer_id,
                "promised_on": dt.date.fromisoformat(result["promised_date"]),
            },
        )
    return list(promises.values())


async def actions_done(
    session: AsyncSession, customer_id: str, kinds: tuple[str, ...]
) -> list[dict[str, Any]]:
    """What the UI did for a customer that its service accepted (the audit log), oldest first."""
    rows = (
        await session.execute(
            select(
                UI_ACTION.c.at,
                UI_ACTION.c.user_name,
                UI_ACTION.c.kind,
                UI_ACTION.c.request,
                UI_ACTION.c.result,
            )
            .where(
                UI_ACTION.c.customer_id == customer_id,
                UI_ACTION.c.kind.in_(kinds),
                UI_ACTION.c.status.between(200, 299),
            )
            .order_by(UI_ACTION.c.at)
        )
    ).all()
    return [
        {"at": r.at, "by": r.user_name, "kind": r.kind, "request": r.request, "result": r.result}
        for r in rows
    ]


def open_pauses(done: list[dict[str, Any]], today: dt.date) -> list[dict[str, Any]]:
    """Manual pauses made through the UI that are neither lifted nor past their resume date."""
    lifted = {a["request"].get("pause_id") for a in done if a["kind"] == "resume"}
    pauses: dict[str, dict[str, Any]] = {}
    for a in done:
        if a["kind"] != "pause" or not a["result"]:
            continue
        pause = {**a["result"], "by": a["by"], "at": a["at"]}
        resume_on = pause.get("resume_on")
        if pause["id"] in lifted or (resume_on and dt.date.fromisoformat(resume_on) <= today):
            continue
        pauses.setdefault(pause["id"], pause)
    return list(pauses.values())


def merge_promises(
    recorded: list[dict[str, Any]], listed: list[dict[str, Any]] | None
) -> list[dict[str, Any]]:
    """Dunning's promises (with their status now: open, kept or broken) and who recorded
    them here; the audit log's alone when dunning's list could not be read."""
    if listed is None:
        return recorded
    here = {p["id"]: p for p in recorded}
    merged = [
        {
            **p,
            "recorded_at": here.get(p["id"], {}).get("recorded_at") or _instant(p["created_at"]),
            "recorded_by": here.get(p["id"], {}).get("recorded_by") or "another system",
            "promised_on": dt.date.fromisoformat(p["promised_date"]),
        }
        for p in listed
    ]
    return sorted(merged, key=lambda p: p["recorded_at"], reverse=True)


async def worklist(
    api: Api,
    session: AsyncSession,
    *,
    owner: str | None,
    band: str | None = None,
    stage: str | None = None,
    currency: str | None = None,
) -> WorkList:
    """The user's customers with their risk, overdue amount and stage, in working order."""
    user = api.user
    # `owner` narrows the list in the invoice service; may_see still decides below.
    everyone, complete = await api.pages(
        "invoice", "/v1/customers", {"owner": owner} if owner else None
    )
    customers = [
        c for c in everyone if may_see(user, c) and (owner is None or c.get("owner") == owner)
    ]
    if currency:
        customers = [c for c in customers if c["currency"] == currency]
    today = dt.datetime.now(dt.UTC).date()
    ids = [c["id"] for c in customers]
    try:  # dunning's open promises, wherever they were recorded
        listed = await api.all_pages("dunning", "/v1/promises", {"status": "open"})
    except ServiceError:
        listed = None  # the promises recorded here stand in
    pending = {
        p["customer_id"]
        for p in merge_promises(await promises_recorded(session, ids), listed)
        if p["promised_on"] >= today and p.get("status", "open") == "open"
    }
    calls = []
    for c in customers:
        cid = c["id"]
        calls += [
            api.get("invoice", f"/v1/customers/{cid}/balance"),
            api.get_or_none("dunning", f"/v1/customers/{cid}/stage"),
            api.get_or_none("risk", f"/v1/customers/{cid}/score"),
            api.get_or_none("risk", f"/v1/customers/{cid}/profile"),
        ]
    results = await gather_limited(calls)
    rows: list[WorkRow] = []
    for i, c in enumerate(customers):
        balance, stage_doc, score, profile = results[4 * i : 4 * i + 4]
        problems = [
            r.sentence for r in (balance, stage_doc, score, profile) if isinstance(r, ServiceError)
        ]
        ok = [
            None if isinstance(r, ServiceError) else r for r in (balance, stage_doc, score, profile)
        ]
        balance, stage_doc, score, profile = ok
        promises = (profile or {}).get("promises", {})
        made, kept, broken = (int(promises.get(k, 0)) for k in ("made", "kept", "broken"))
        rows.append(
            WorkRow(
                id=c["id"],
                name=c["name"],
                owner=c.get("owner"),
                currency=c["currency"],
                band=(score or {}).get("band"),
                score=(score or {}).get("score"),
                overdue=int((balance or {}).get("overdue", 0)),
                open=int((balance or {}).get("open", 0)),
                stage=(stage_doc or {}).get("stage"),
                on_hold=bool((stage_doc or {}).get("on_hold")),
                broken_promises=broken,
                disputed="disputed" in (balance or {}).get("by_status", {}),
                promise_pending=c["id"] in pending or made > kept + broken,
                problems=problems,
            )
        )
    if band:
        rows = [r for r in rows if r.band == band]
    if stage:
        rows = [r for r in rows if r.stage == stage]
    return WorkList(sorted(rows, key=WorkRow.sort_key), complete, len(everyone))


@dataclass
class Event:
    """One line of the customer's timeline."""

    at: dt.datetime
    kind: str
    title: str
    detail: str = ""
    status: str = ""


def _instant(value: str | dt.date | dt.datetime) -> dt.datetime:
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value) if "T" in value else dt.date.fromisoformat(value)
    if isinstance(value, dt.datetime):
        return value if value.tzinfo else value.replace(tzinfo=dt.UTC)
    return dt.datetime(value.year, value.month, value.day, tzinfo=dt.UTC)


@dataclass
class CustomerPage:
    customer: dict[str, Any]
    balance: dict[str, Any] | None
    aging: dict[str, Any] | None
    invoices: list[dict[str, Any]]
    stage: dict[str, Any] | None
    upcoming: list[dict[str, Any]]
    score: dict[str, Any] | None
    signals: list[dict[str, Any]]
    promises: list[dict[str, Any]]
    paused: list[dict[str, Any]]
    events: list[Event]
    problems: dict[str, str]
    today: dt.date
    #: Disputes opened through the UI, as the invoice service has them now.
    disputes: list[dict[str, Any]] = field(default_factory=list)
    #: Invoices disputed outside the UI (no dispute id here to resolve it with).
    disputed_elsewhere: list[dict[str, Any]] = field(default_factory=list)
    #: Manual pauses made through the UI and still in force.
    pauses: list[dict[str, Any]] = field(default_factory=list)

    @property
    def billing_contact_id(self) -> str | None:
        contacts = self.customer.get("contacts", [])
        billing = [c for c in contacts if c.get("role") == "billing" and not c.get("undeliverable")]
        return billing[0]["id"] if billing else None

    @property
    def open_invoices(self) -> list[dict[str, Any]]:
        return [i for i in self.invoices if i["status"] in ("open", "partially_paid")]


async def customer_page(api: Api, session: AsyncSession, customer_id: str) -> CustomerPage:
    """Everything the customer page shows; a section whose service failed says so instead."""
    if not SAFE_ID.match(customer_id):
        raise NotYours(customer_id)
    customer = await api.get_or_none("invoice", f"/v1/customers/{customer_id}")
    if customer is None or not may_see(api.user, customer):
        raise NotYours(customer_id)
    names = (
        "balance",
        "aging",
        "invoices",
        "payments",
        "stage",
        "timeline",
        "score",
        "signals",
        "messages",
        "responses",
    )
    cid = {"customer_id": customer_id}
    results = await gather_limited(
        [
            api.get("invoice", f"/v1/customers/{customer_id}/balance"),
            api.get("invoice", f"/v1/customers/{customer_id}/aging"),
            api.all_pages("invoice", "/v1/invoices", cid),
            api.all_pages("invoice", "/v1/payments", cid),
            api.get_or_none("dunning", f"/v1/customers/{customer_id}/stage"),
            api.get_or_none("dunning", f"/v1/customers/{customer_id}/timeline"),
            api.get_or_none("risk", f"/v1/customers/{customer_id}/score"),
            api.get_or_none("risk", f"/v1/customers/{customer_id}/signals"),
            api.get("notify", "/v1/messages", {**cid, "limit": 200}),
            api.get("notify", "/v1/responses", {**cid, "limit": 200}),
        ]
    )
    got: dict[str, Any] = {}
    problems: dict[str, str] = {}
    for name, result in zip(names, results, strict=True):
        if isinstance(result, ServiceError):
            problems[name] = result.sentence
            got[name] = None
        else:
            got[name] = result
    invoices: list[dict[str, Any]] = got["invoices"] or []
    numbers = {i["id"]: i["number"] for i in invoices}
    today = local_today(customer.get("timezone") or "UTC")
    try:
        listed = await api.all_pages("dunning", "/v1/promises", {"customer_id": customer_id})
    except ServiceError as exc:
        problems["promises"] = exc.sentence
        listed = None
    promises = merge_promises(await promises_recorded(session, [customer_id]), listed)
    done = await actions_done(session, customer_id, ACTION_KINDS)
    # Dunning's pauses in force (every kind: manual, dispute, promise, in transit); when the
    # list cannot be read, the manual pauses made here (the audit log) stand in.
    try:
        in_force = await api.all_pages(
            "dunning", "/v1/pauses", {"customer_id": customer_id, "active": "true"}
        )
    except ServiceError as exc:
        problems["pauses"] = exc.sentence
        in_force = None
    dispute_ids = list(
        dict.fromkeys(
            [a["result"]["id"] for a in done if a["kind"] == "dispute_open"]
            + [
                p["ref"]
                for p in in_force or []
                if p["kind"] == "dispute" and SAFE_ID.match(p.get("ref") or "")
            ]
        )
    )
    disputes = []
    for d in await gather_limited(api.get("invoice", f"/v1/disputes/{i}") for i in dispute_ids):
        if isinstance(d, ServiceError):
            problems["disputes"] = d.sentence
        else:
            disputes.append({**d, "invoice": numbers.get(d["invoice_id"], d["invoice_id"])})
    known = {d["invoice_id"] for d in disputes if d["status"] == "open"}
    disputed_elsewhere = [i for i in invoices if i["status"] == "disputed" and i["id"] not in known]
    paused = [
        {
            "invoice": numbers.get(inv, inv),
            "invoice_id": inv,
            "until": p["promised_on"],
            "why": "promise to pay",
        }
        for p in promises
        if p["promised_on"] >= today and p.get("status", "open") == "open"
        for inv in p.get("invoice_ids", [])
    ]
    paused_until = {p["invoice_id"]: p["until"] for p in paused}
    timeline = got["timeline"] or {}
    upcoming = [
        {
            **step,
            "invoice": numbers.get(step["invoice_id"], step["invoice_id"]),
            "held_until": _held_until(step, paused_until),
        }
        for step in timeline.get("upcoming", [])
    ]
    return CustomerPage(
        customer=customer,
        balance=got["balance"],
        aging=got["aging"],
        invoices=invoices,
        stage=got["stage"],
        upcoming=upcoming,
        score=got["score"],
        signals=(got["signals"] or {}).get("open", []),
        promises=promises,
        paused=paused,
        events=sorted(
            _events(got, numbers, promises, timeline) + _action_events(done, numbers),
            key=lambda e: e.at,
            reverse=True,
        ),
        problems=problems,
        today=today,
        disputes=disputes,
        disputed_elsewhere=disputed_elsewhere,
        pauses=open_pauses(done, today) if in_force is None else in_force,
    )


#: The audit log's kinds the customer page reads back (promises have their own reader).
ACTION_KINDS = (
    "dispute_open",
    "dispute_resolve",
    "pause",
    "resume",
    "hold_place",
    "hold_release",
    "message",
    "contacts",
)


def _action_events(done: list[dict[str, Any]], numbers: dict[str, str]) -> list[Event]:
    """The timeline lines of what collectors did here (disputes, pauses, holds, contacts);
    messages show as the delivery log's own lines."""
    events = []
    for a in done:
        req, res, by = a["request"], a["result"] or {}, f"by {a['by']}"
        kind = a["kind"]
        if kind == "dispute_open":
            number = numbers.get(res.get("invoice_id", ""), "")
            title, detail = f"Dispute opened on {number}", f"{req.get('reason')} — {by}"
        elif kind == "dispute_resolve":
            number = numbers.get(res.get("invoice_id", ""), "")
            outcome = str(req.get("outcome", "")).replace("_", " ")
            title, detail = f"Dispute on {number} resolved: {outcome}", by
        elif kind == "pause":
            until = f" until {req['resume_on']}" if req.get("resume_on") else ""
            title, detail = f"Dunning paused{until}", f"{req.get('reason')} — {by}"
        elif kind == "resume":
            title, detail = "Dunning resumed", by
        elif kind == "hold_place":
            title, detail = "Credit hold placed", f"{req.get('reason')} — {by}"
        elif kind == "hold_release":
            title, detail = "Credit hold released", f"{req.get('reason')} — {by}"
        elif kind == "contacts":
            title, detail = "Contacts changed", by
        else:
            continue
        events.append(Event(_instant(a["at"]), kind.split("_")[0], title, detail))
    return events


def _held_until(step: dict[str, Any], paused_until: dict[str, dt.date]) -> dt.date | None:
    """The promised date a pending step waits for, when its invoice is paused past its date."""
    until = paused_until.get(step["invoice_id"])
    if until is not None and dt.date.fromisoformat(step["local_date"]) <= until:
        return until
    return None


def _events(
    got: dict[str, Any],
    numbers: dict[str, str],
    promises: list[dict[str, Any]],
    timeline: dict[str, Any],
) -> list[Event]:
    """One timeline, newest first, of what happened to the customer across the services."""
    events: list[Event] = []
    for inv in got["invoices"] or []:
        events.append(
            Event(
                _instant(inv["issue_date"]),
                "invoice",
                f"Invoice {inv['number']} issued",
                f"due {inv['due_date']}",
                inv["status"],
            )
        )
    for pay in got["payments"] or []:
        paid = ", ".join(numbers.get(a["invoice_id"], a["invoice_id"]) for a in pay["allocations"])
        events.append(
            Event(
                _instant(pay["received_at"]),
                "payment",
                f"Payment received by {pay['method'].replace('_', ' ')}",
                f"applied to {paid}" if paid else "not applied yet",
                pay["status"],
            )
        )
    for msg in (got["messages"] or {}).get("items", []):
        events.append(
            Event(
                _instant(msg["sent_at"] or msg["created_at"]),
                "message",
                " ".join((msg["channel"].upper(), msg["kind"].replace("_", " ")))
                + (f": {msg['subject']}" if msg.get("subject") else ""),
                msg.get("reason") or "",
                msg["status"],
            )
        )
    for r in (got["responses"] or {}).get("items", []):
        events.append(
            Event(
                _instant(r["logged_at"]),
                "response",
                f"Response: {r['reason'].replace('_', ' ')}",
                " — ".join(
                    x
                    for x in (r.get("note"), f"by {r['logged_by']}" if r.get("logged_by") else None)
                    if x
                ),
                r["source"],
            )
        )
    for p in promises:
        events.append(
            Event(
                _instant(p["recorded_at"]),
                "promise",
                f"Promise to pay by {p['promised_on'].isoformat()}",
                f"{len(p.get('invoice_ids', []))} invoice(s), recorded by {p['recorded_by']}",
                p.get("status", "open"),
            )
        )
    for step in timeline.get("fired", []):
        events.append(
            Event(
                _instant(step["emitted_at"] or step["send_at"]),
                "dunning",
                f"Dunning step {step['step_key']} ({step['channel']})",
                numbers.get(step["invoice_id"], step["invoice_id"]),
                "fired",
            )
        )
    return sorted(events, key=lambda e: e.at, reverse=True)
