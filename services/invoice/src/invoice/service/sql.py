"""The lean write path: asyncpg statements inside the session's own transaction.

Issuing an invoice and recording a payment are the service's hot writes (issue #8). Through
the ORM each cost ~7-8 ms of CPU, half of it SQLAlchemy's unit of work and statement
compilation; here they run as a few fixed SQL texts on the session's asyncpg connection,
which asyncpg prepares once per connection and caches. The session stays the transaction's
owner: the route's `session.begin()` commits or rolls back these statements with its own,
the audit hook has tagged the transaction with the actor before the first of them (the
triggers see every row), and nothing here commits.

PostgreSQL errors that the ORM path turned into problems (a unique race: 409; a value the
database cannot hold: 422; a connection lost to a restart: 503, the connection discarded)
are turned into the same problems by `translated()`.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import asyncpg
from asyncpg.exceptions._base import DataError as ArgumentError
from asyncpg.exceptions._base import InternalClientError
from duewise_events.catalogue import Event
from duewise_events.envelope import Envelope
from duewise_events.tracing import current_trace_headers
from duewise_service.problems import DomainError, not_found
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import set_committed_value
from sqlalchemy.orm.util import identity_key

from invoice.models import OUTBOX

#: What a server going away (shutdown, crash, restart) surfaces as on a raw connection: a
#: closed-connection or protocol-state error from asyncpg itself, a socket error, or a
#: server error of class 08 (connection) or 57P (shutting down, crashed, starting).
_LOST = (asyncpg.InterfaceError, InternalClientError, OSError, asyncpg.PostgresError)


def _lost(exc: BaseException) -> bool:
    if isinstance(exc, asyncpg.PostgresError):
        return str(exc.sqlstate).startswith(("08", "57P"))
    if isinstance(exc, asyncpg.InterfaceError):
        return "closed" in str(exc)  # as SQLAlchemy's asyncpg dialect tells a disconnect
    return True


async def driver_connection(session: AsyncSession) -> asyncpg.Connection:
    """The asyncpg connection of `session`'s transaction, begun (and audit-tagged) if need be.

    Pending ORM changes are flushed first, so that these statements see them.
    """
    if session.new or session.dirty or session.deleted:
        await session.flush()
    conn = await session.connection()
    raw = await conn.get_raw_connection()
    driver: asyncpg.Connection = raw.driver_connection  # type: ignore[assignment]
    if not driver.is_in_transaction():
        # SQLAlchemy's asyncpg adapter sends BEGIN with its first statement; a write made
        # outside a request (no audit tag yet) has sent none, and must not run in autocommit.
        await conn.execute(text("SELECT 1"))
    return driver


@contextlib.asynccontextmanager
async def translated(session: AsyncSession) -> AsyncIterator[None]:
    """asyncpg's errors as the ORM path met them: integrity and data errors as the problems
    it answered with, a lost connection discarded from the pool and answered with a 503."""
    try:
        yield
    except asyncpg.IntegrityConstraintViolationError as exc:
        # A race the service's own checks could not see (two writers, one unique value).
        constraint = exc.constraint_name or "unique constraint"
        raise DomainError(
            409,
            "Conflict",
            f"the request conflicts with existing data ({constraint})",
            code="conflict",
        ) from exc
    except (asyncpg.DataError, ArgumentError) as exc:
        # SQLSTATE class 22 (a NUL in text, a number past the column's range), or asyncpg
        # refusing the argument before sending it: the client's value, a 422.
        reason = str(exc).splitlines()[0][:200] if str(exc) else ""
        raise DomainError(
            422,
            "Invalid value",
            "a value in the request cannot be stored" + (f" ({reason})" if reason else ""),
            code="invalid-value",
        ) from exc
    except _LOST as exc:
        if not _lost(exc):
            raise
        # SQLAlchemy did not see this error, so it would put the dead connection back in the
        # pool (as db._discard_broken_connection explains for InternalClientError): drop it.
        with contextlib.suppress(Exception):
            await (await session.connection()).invalidate()
        # A ConnectionError is problems.py's "database unavailable": 503 with Retry-After.
        raise ConnectionError(f"database connection lost: {exc!r}") from exc


def sync_loaded(session: AsyncSession, model: type[Any], ident: str, **values: Any) -> None:
    """Give a row the session already holds (if it does) the values just written to it here,
    as committed state: these statements bypass the ORM, which would otherwise keep serving
    the old ones from its identity map."""
    obj = session.sync_session.identity_map.get(identity_key(model, ident))
    if obj is not None:
        for name, value in values.items():
            set_committed_value(obj, name, value)


# -- the customer lock ---------------------------------------------------------------------


@dataclass(frozen=True)
class LockedCustomer:
    """What the write paths need of a customer whose row this transaction has locked."""

    id: str
    external_id: str | None
    currency: str
    invoice_preferences: dict[str, Any]
    payment_terms_days: int


_CUSTOMER = (
    "SELECT id, external_id, currency, invoice_preferences, payment_terms_days FROM customer"
)
_LOCK_BY_ID = f"{_CUSTOMER} WHERE id = $1 FOR UPDATE"
_LOCK_BY_EXTERNAL_ID = f"{_CUSTOMER} WHERE external_id = $1 FOR UPDATE"


class NamesCustomer(Protocol):
    """A request naming its customer by id or by external id (an invoice, a payment)."""

    @property
    def customer_id(self) -> str | None: ...
    @property
    def customer_external_id(self) -> str | None: ...


async def lock_customer_of(conn: asyncpg.Connection, data: NamesCustomer) -> LockedCustomer:
    """The customer `data` names, locked FOR UPDATE; as `common.lock_customer`, an unknown
    one is a 422 naming the field that named it."""
    customer_id, external_id = data.customer_id, data.customer_external_id
    field = "customer_id"
    if customer_id is not None:
        row = await conn.fetchrow(_LOCK_BY_ID, customer_id)
        ident = customer_id
    elif external_id is not None:
        row = await conn.fetchrow(_LOCK_BY_EXTERNAL_ID, external_id)
        ident, field = external_id, "customer_external_id"
    else:
        raise DomainError(422, "Customer required", "give customer_id", "customer_id")
    if row is None:
        raise not_found("customer", ident, field)
    return LockedCustomer(
        id=row[0],
        external_id=row[1],
        currency=row[2],
        invoice_preferences=row[3],
        payment_terms_days=row[4],
    )


def insert_row(table: str, columns: Sequence[str]) -> str:
    """`INSERT INTO table (columns) VALUES ($1, …)`: one row from the first parameters."""
    params = ", ".join(f"${i + 1}" for i in range(len(columns)))
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({params})"


def arrays(rows: Sequence[object], columns: Sequence[str]) -> list[list[Any]]:
    """One array per column of `rows`: the parameters of an `unnest($n::t[], …)`."""
    return [[getattr(row, c) for row in rows] for c in columns]


# -- the outbox row --------------------------------------------------------------------------

#: The outbox columns `Outbox.add` writes (subject stays NULL) and their types: parameters
#: in a SELECT list carry no target type, so each is cast.
_OUTBOX_COLUMNS = (
    ("event_id", "text"), ("topic", "text"), ("key", "text"), ("type", "text"),
    ("source", "text"), ("time", "timestamptz"), ("payload", "jsonb"),
    ("traceparent", "text"), ("tracestate", "text"),
)  # fmt: skip


def outbox_cte(first: int, *, when: str) -> str:
    """`staged AS (INSERT INTO outbox …)` from parameters $first..$first+8 (`outbox_params`),
    one row for each row of the CTE `when` (none when it wrote nothing); like `Outbox.add`,
    it wakes the relay at commit (NOTIFY is transactional)."""
    columns = ", ".join(f'"{name}"' for name, _ in _OUTBOX_COLUMNS)
    values = ", ".join(f"${first + i}::{kind}" for i, (_, kind) in enumerate(_OUTBOX_COLUMNS))
    return (
        f"staged AS (INSERT INTO {OUTBOX.table.name} ({columns}) SELECT {values} FROM {when} "
        f"RETURNING pg_notify('{OUTBOX.channel}', ''))"
    )


def outbox_params(event: Event) -> tuple[Any, ...]:
    """The nine values of `outbox_cte` for `event`: its envelope and the active trace."""
    envelope = Envelope.wrap(event, source=OUTBOX.source)
    trace = current_trace_headers()
    return (
        envelope.id,
        event.TOPIC,
        envelope.key,
        envelope.type,
        envelope.source,
        envelope.time,
        json.dumps(envelope.data),
        trace.get("traceparent"),
        trace.get("tracestate"),
    )
