"""What every page shares: who may see a customer, what ids look like, the customer's "today",
and what the audit log says the UI did (promises recorded, pauses made). The pages themselves
are worklist.py and customer.py; no AR data is kept here."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from notify.ui.accounts import SignedIn
from notify.ui.tables import UI_ACTION

#: What the services' ids look like (`cus_0192…`): anything else is refused before a call, so
#: a path parameter can never carry a query, a fragment or `..` into a service's URL.
SAFE_ID = re.compile(r"^[A-Za-z0-9_-]{1,100}$")


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
            "recorded_at": here.get(p["id"], {}).get("recorded_at") or instant(p["created_at"]),
            "recorded_by": here.get(p["id"], {}).get("recorded_by") or "another system",
            "promised_on": dt.date.fromisoformat(p["promised_date"]),
        }
        for p in listed
    ]
    return sorted(merged, key=lambda p: p["recorded_at"], reverse=True)


def instant(value: str | dt.date | dt.datetime) -> dt.datetime:
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value) if "T" in value else dt.date.fromisoformat(value)
    if isinstance(value, dt.datetime):
        return value if value.tzinfo else value.replace(tzinfo=dt.UTC)
    return dt.datetime(value.year, value.month, value.day, tzinfo=dt.UTC)
