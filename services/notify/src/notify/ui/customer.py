"""The customer page: everything about one customer, from the services that own it, in a
bounded number of calls (one per list, none per invoice or dispute)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from notify.ui.clients import Api, ServiceError, gather_limited
from notify.ui.customer_parts import (
    DUNNING_PARTS,
    INVOICE_PARTS,
    SERVICE_OF,
    Reader,
    copy_here,
    numbers_here,
)
from notify.ui.views import (
    SAFE_ID,
    NotYours,
    actions_done,
    instant,
    local_today,
    may_see,
    merge_promises,
    open_pauses,
    promises_recorded,
)


@dataclass
class Event:
    """One line of the customer's timeline."""

    at: dt.datetime
    kind: str
    title: str
    detail: str = ""
    status: str = ""


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
    #: Why a service's part of the page is missing, by service (see `blocked`).
    down: dict[str, str] = field(default_factory=dict)

    def blocked(self, form: str) -> str | None:
        """Why `form` cannot be used now (a service it acts with, or is built from, did not
        answer this page), or None. Such forms are shown disabled with this sentence: sent,
        they would wait on that service again, and some would act on what is missing (a
        promise without the invoice list, contacts from notify's copy, a hold whose state is
        unknown)."""
        for service in FORM_NEEDS[form]:
            if service in self.down:
                return f"Not available right now: {self.down[service]}. Reload to try again."
        return None

    @property
    def billing_contact_id(self) -> str | None:
        contacts = self.customer.get("contacts", [])
        billing = [c for c in contacts if c.get("role") == "billing" and not c.get("undeliverable")]
        return billing[0]["id"] if billing else None

    @property
    def open_invoices(self) -> list[dict[str, Any]]:
        return [i for i in self.invoices if i["status"] in ("open", "partially_paid")]


async def customer_page(
    api: Api, session: AsyncSession, customer_id: str, budget_s: float
) -> CustomerPage:
    """Everything the customer page shows; a section whose service failed, or did not answer
    within `budget_s`, says so instead and the page shows the rest."""
    if not SAFE_ID.match(customer_id):
        raise NotYours(customer_id)
    cid = {"customer_id": customer_id}
    read = Reader(api, customer_id, budget_s)
    problems = read.problems
    # One part per service, all at once, each call within the budget: the invoice service's
    # and dunning's overviews (each a consistent snapshot of everything they hold about the
    # customer, with the rest of any long list), risk's score and signals, notify's messages
    # and responses. A saturated service costs the page one budget, never the page itself;
    # nothing shows before may_see says yes.
    calls = {
        "invoice": read.invoice_part(),
        "dunning": read.dunning_part(),
        "score": read.get("risk", f"/v1/customers/{customer_id}/score"),
        "signals": read.get("risk", f"/v1/customers/{customer_id}/signals"),
        "messages": read.get("notify", "/v1/messages", {**cid, "limit": 200}),
        "responses": read.get("notify", "/v1/responses", {**cid, "limit": 200}),
    }
    results = dict(zip(calls, await gather_limited(calls.values(), limit=len(calls)), strict=True))
    invoice = results.pop("invoice")
    got: dict[str, Any]
    if isinstance(invoice, ServiceError):
        # Who the customer is and who owns it, from notify's own copy; without one the
        # customer cannot be told apart from one that is not the user's: the error page.
        customer = await copy_here(session, customer_id, invoice)
        problems["customer"] = (
            f"Customer details are notify's copy from {customer['as_of']:%Y-%m-%d %H:%M} UTC: "
            f"{invoice.why}. Reload to try again."
        )
        read.missing("invoice", INVOICE_PARTS, invoice)
        got = dict.fromkeys(("balance", "aging", *INVOICE_PARTS))
    elif invoice is None:
        raise NotYours(customer_id)
    else:
        customer, got = invoice["customer"], invoice
    if not may_see(api.user, customer):
        raise NotYours(customer_id)
    dunning = results.pop("dunning")
    if isinstance(dunning, ServiceError):
        read.missing("dunning", DUNNING_PARTS, dunning)
        got |= dict.fromkeys(DUNNING_PARTS)
    elif dunning is None:  # dunning has not heard of the customer yet: nothing planned
        got |= {"stage": None, "timeline": None, "promises": [], "pauses": []}
    else:
        got |= dunning
    for name, result in results.items():
        if isinstance(result, ServiceError):
            read.missing(SERVICE_OF[name], (name,), result)
            got[name] = None
        else:
            got[name] = result
    invoices: list[dict[str, Any]] = got["invoices"] or []
    numbers = {i["id"]: i["number"] for i in invoices}
    if got["invoices"] is None:  # name the invoices in dunning's steps as notify knows them
        numbers = await numbers_here(session, customer_id)
    today = local_today(customer.get("timezone") or "UTC")
    # When dunning's lists cannot be read, what the audit log says the UI did stands in.
    promises = merge_promises(await promises_recorded(session, [customer_id]), got["promises"])
    done = await actions_done(session, customer_id, ACTION_KINDS)
    in_force = got["pauses"]
    disputes = [
        {**d, "invoice": numbers.get(d["invoice_id"], d["invoice_id"])}
        for d in got["disputes"] or []
    ]
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
        down=read.down,
    )


#: The services each form of the page acts with or is built from. Logging a response and
#: sending a message need notify alone: they stay usable whatever else is down.
FORM_NEEDS: dict[str, tuple[str, ...]] = {
    "promise": ("invoice", "dunning"),
    "dispute": ("invoice",),
    "pause": ("dunning",),
    "hold": ("dunning",),
    "contacts": ("invoice",),
}


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
        events.append(Event(instant(a["at"]), kind.split("_")[0], title, detail))
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
                instant(inv["issue_date"]),
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
                instant(pay["received_at"]),
                "payment",
                f"Payment received by {pay['method'].replace('_', ' ')}",
                f"applied to {paid}" if paid else "not applied yet",
                pay["status"],
            )
        )
    for msg in (got["messages"] or {}).get("items", []):
        events.append(
            Event(
                instant(msg["sent_at"] or msg["created_at"]),
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
                instant(r["logged_at"]),
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
                instant(p["recorded_at"]),
                "promise",
                f"Promise to pay by {p['promised_on'].isoformat()}",
                f"{len(p.get('invoice_ids', []))} invoice(s), recorded by {p['recorded_by']}",
                p.get("status", "open"),
            )
        )
    for step in timeline.get("fired", []):
        events.append(
            Event(
                instant(step["emitted_at"] or step["send_at"]),
                "dunning",
                f"Dunning step {step['step_key']} ({step['channel']})",
                numbers.get(step["invoice_id"], step["invoice_id"]),
                "fired",
            )
        )
    return sorted(events, key=lambda e: e.at, reverse=True)
