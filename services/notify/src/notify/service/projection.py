"""The consumer's reads and writes of its projections, as statements compiled once.

The consumer applies up to 50 events of a partition in one transaction (EventConsumer's
batch). Through the ORM each event cost ~4-8 ms of CPU: identity-map loads, unit-of-work
flushes and 7-8 round trips. These text statements are compiled once and then served from
the engine's statement cache, each write is one statement (an upsert, an UPDATE ... RETURNING
that also says whether the row exists), and what a transaction has learned about a customer
(its advisory lock is held, whether it exists, its on-time streak) is kept in `TxState` for
the rest of that transaction.

Why keeping it is safe: every event of a customer is applied under that customer's advisory
lock (`handlers.handle`), held until the transaction ends, and only those handlers create a
customer or change its streak. So for a locked customer, nothing another transaction commits
can change what this one read. Customers whose lock this transaction does not hold are read
afresh every time.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import bindparam, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

#: The first key of the per-customer advisory lock (the second is a hash of the id).
CUSTOMER_LOCK = 0x0D0E_4003

_LOCK = text("SELECT pg_advisory_xact_lock(:k1, hashtext(:key))").bindparams(k1=CUSTOMER_LOCK)

_CUSTOMER = text("SELECT on_time_streak, good_standing_since FROM customer WHERE id = :id")

# New customers start with no streak; an update keeps the streak, which only payments move.
_UPSERT_CUSTOMER = text(
    """
    INSERT INTO customer (id, name, currency, timezone, country, locale, owner, contacts,
                          invoice_preferences, on_time_streak, updated_at)
    VALUES (:id, :name, :currency, :timezone, :country, :locale, :owner, :contacts,
            :invoice_preferences, 0, :now)
    ON CONFLICT (id) DO UPDATE SET
        name = excluded.name, currency = excluded.currency, timezone = excluded.timezone,
        country = excluded.country, locale = excluded.locale, owner = excluded.owner,
        contacts = excluded.contacts, invoice_preferences = excluded.invoice_preferences,
        updated_at = excluded.updated_at
    RETURNING on_time_streak, good_standing_since
    """
).bindparams(bindparam("contacts", type_=JSONB), bindparam("invoice_preferences", type_=JSONB))

_SET_STREAK = text(
    "UPDATE customer SET on_time_streak = :streak, good_standing_since = :since WHERE id = :id"
)

_HELD_COLUMNS = "id, event_id, type, payload"

# An invoice already projected is left as it is (a redelivered or re-issued event); held events
# waiting for it are taken in the same round trip (data-modifying CTEs always run in full).
_INSERT_INVOICE_AND_TAKE_HELD = text(
    f"""
    WITH new_invoice AS (
        INSERT INTO invoice (id, customer_id, number, kind, issue_date, due_date, currency,
                             total, balance, status, po_number, gl_code, lines, imported,
                             updated_at)
        VALUES (:id, :customer_id, :number, :kind, :issue_date, :due_date, :currency, :total,
                :balance, :status, :po_number, :gl_code, :lines, :imported, :now)
        ON CONFLICT (id) DO NOTHING
    )
    DELETE FROM held_event WHERE waiting_for = :waiting_for RETURNING {_HELD_COLUMNS}
    """
).bindparams(bindparam("lines", type_=JSONB))

_TAKE_HELD = text(
    f"DELETE FROM held_event WHERE waiting_for = :waiting_for RETURNING {_HELD_COLUMNS}"
)

_HOLD = text(
    "INSERT INTO held_event (waiting_for, event_id, type, payload, received_at) "
    "VALUES (:waiting_for, :event_id, :type, :payload, :now)"
).bindparams(bindparam("payload", type_=JSONB))

# One invoice's status (and balance, when given); no row back: the invoice is not known yet.
_SET_INVOICE = text(
    "UPDATE invoice SET status = :status, balance = COALESCE(:balance, balance), "
    "updated_at = :now WHERE id = :id RETURNING id"
)

# A payment's allocations carry absolute balances: applied all together, or (when one of the
# invoices is not known yet) none of them, so that the whole event can be held and re-applied.
_ALLOCATE = text(
    """
    UPDATE invoice AS i SET balance = a.balance, status = a.status, updated_at = :now
      FROM unnest(CAST(:ids AS text[]), CAST(:balances AS bigint[]), CAST(:statuses AS text[]))
           AS a(id, balance, status)
     WHERE i.id = a.id
       AND NOT EXISTS (
           SELECT 1 FROM unnest(CAST(:ids AS text[])) AS w(id)
            WHERE NOT EXISTS (SELECT 1 FROM invoice AS k WHERE k.id = w.id))
    RETURNING i.id
    """
)

_KNOWN_INVOICES = text("SELECT id FROM invoice WHERE id = ANY(CAST(:ids AS text[]))")


@dataclass
class CustomerState:
    """What the payment handlers read and change of a projected customer."""

    on_time_streak: int
    good_standing_since: dt.date | None


@dataclass
class HeldRow:
    id: int
    event_id: str
    type: str
    payload: dict[str, Any]


@dataclass
class TxState:
    """What one transaction has learned; see the module's docstring for why it holds."""

    transaction: object
    locked: set[str] = field(default_factory=set)
    customers: dict[str, CustomerState | None] = field(default_factory=dict)
    endpoints: list[Any] | None = None  # the enabled webhook endpoints (handlers.fan_out)


_STATE = "notify.tx_state"


async def tx_state(session: AsyncSession) -> tuple[AsyncConnection, TxState]:
    """The session's connection (in its transaction) and that transaction's `TxState`."""
    conn = await session.connection()
    transaction = session.get_transaction()
    state: TxState | None = session.info.get(_STATE)
    if state is None or state.transaction is not transaction:  # a new transaction
        state = TxState(transaction)
        session.info[_STATE] = state
    return conn, state


async def lock_customer(session: AsyncSession, customer_id: str) -> None:
    """Take the customer's advisory lock for the rest of the transaction (once)."""
    conn, state = await tx_state(session)
    if customer_id not in state.locked:
        await conn.execute(_LOCK, {"key": customer_id})
        state.locked.add(customer_id)


async def customer(session: AsyncSession, customer_id: str) -> CustomerState | None:
    """The projected customer's streak, or None when it is not projected (yet)."""
    conn, state = await tx_state(session)
    if customer_id in state.customers:
        return state.customers[customer_id]
    row = (await conn.execute(_CUSTOMER, {"id": customer_id})).first()
    found = None if row is None else CustomerState(int(row[0]), row[1])
    if customer_id in state.locked:
        state.customers[customer_id] = found
    return found


async def upsert_customer(session: AsyncSession, values: dict[str, Any]) -> None:
    """Create the customer or replace its details (its streak stays)."""
    conn, state = await tx_state(session)
    row = (await conn.execute(_UPSERT_CUSTOMER, values)).one()
    if values["id"] in state.locked:
        state.customers[values["id"]] = CustomerState(int(row[0]), row[1])


async def set_streak(session: AsyncSession, customer_id: str, new: CustomerState) -> None:
    """Write the customer's streak (`new` is the object `customer()` returned, changed)."""
    conn, _ = await tx_state(session)
    await conn.execute(
        _SET_STREAK,
        {"id": customer_id, "streak": new.on_time_streak, "since": new.good_standing_since},
    )


def _held(rows: Any) -> list[HeldRow]:
    """Oldest first: held events are re-applied in the order they arrived."""
    return sorted((HeldRow(int(r[0]), r[1], r[2], r[3]) for r in rows), key=lambda h: h.id)


async def insert_invoice_and_take_held(
    session: AsyncSession, values: dict[str, Any], waiting_for: str
) -> list[HeldRow]:
    """Project a new invoice (an existing one stays) and take what waited for it."""
    conn, _ = await tx_state(session)
    rows = await conn.execute(_INSERT_INVOICE_AND_TAKE_HELD, {**values, "waiting_for": waiting_for})
    return _held(rows)


async def take_held(session: AsyncSession, waiting_for: str) -> list[HeldRow]:
    conn, _ = await tx_state(session)
    return _held(await conn.execute(_TAKE_HELD, {"waiting_for": waiting_for}))


async def hold(
    session: AsyncSession,
    *,
    waiting_for: str,
    event_id: str,
    type_: str,
    payload: dict[str, Any],
    now: dt.datetime,
) -> None:
    conn, _ = await tx_state(session)
    await conn.execute(
        _HOLD,
        {
            "waiting_for": waiting_for,
            "event_id": event_id,
            "type": type_,
            "payload": payload,
            "now": now,
        },
    )


async def set_invoice(
    session: AsyncSession, invoice_id: str, *, status: str, balance: int | None, now: dt.datetime
) -> bool:
    """Set an invoice's status (and balance); False when the invoice is not projected."""
    conn, _ = await tx_state(session)
    row = await conn.execute(
        _SET_INVOICE, {"id": invoice_id, "status": status, "balance": balance, "now": now}
    )
    return row.first() is not None


async def allocate(
    session: AsyncSession, allocations: Mapping[str, tuple[int, str]], now: dt.datetime
) -> list[str]:
    """Set every invoice's (balance, status), or none: the ids not projected (yet)."""
    if not allocations:
        return []
    conn, _ = await tx_state(session)
    ids = list(allocations)
    params = {
        "ids": ids,
        "balances": [allocations[i][0] for i in ids],
        "statuses": [allocations[i][1] for i in ids],
        "now": now,
    }
    if len((await conn.execute(_ALLOCATE, params)).all()) == len(ids):
        return []
    known = {r[0] for r in await conn.execute(_KNOWN_INVOICES, {"ids": ids})}
    return [i for i in ids if i not in known]
