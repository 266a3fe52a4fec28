"""The append-only audit log every service keeps of its own state changes.

Each service owns its data, so each keeps its own `audit.audit_log` table (a schema of its
own: the tests' table-emptying and Alembic's model comparison only look at `public`). Rows
are written by PostgreSQL, not by Python: an AFTER ROW trigger on every domain table records
each INSERT, UPDATE (only the columns that changed) and DELETE in the same transaction as the
change, whether the ORM or a Core statement made it. A second trigger refuses UPDATE, DELETE
and TRUNCATE on the log itself, so no route and no SQL session can rewrite history (only
dropping the table, a schema change, could).

Who and why come from the request: the auth dependency calls `set_actor` on a write, and a
session hook copies the actor, the request line and the current trace id into transaction
settings (`set_config(..., true)`) that the trigger reads. Changes made outside a request
(consumers, the scheduler, the relay) are recorded with the actor `system`.

A service wires it with, in a migration, `create_audit_log(op)` then
`attach_all(op, exclude=(…))` (or `attach(op, table)` for a table added later); in
`create_app`, `install_session_hook()` and `app.include_router(audit_router(AUTH), prefix="/v1")`
(duewise_service.audit_api).
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from opentelemetry import trace
from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Identity,
    MetaData,
    Table,
    Text,
    event,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session, SessionTransaction

AUDIT_SCHEMA = "audit"

#: The log's own metadata: it is no service model's table (see the module docstring).
AUDIT_METADATA = MetaData(schema=AUDIT_SCHEMA)

AUDIT_LOG = Table(
    "audit_log",
    AUDIT_METADATA,
    Column("id", BigInteger, Identity(always=True), primary_key=True),
    Column("at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("actor", Text, nullable=False),  # token or UI user name; `system` outside requests
    Column("actor_role", Text),
    Column("actor_token_id", Text),
    Column("request", Text),  # "POST /v1/invoices"
    Column("trace_id", Text),
    Column("action", Text, nullable=False),  # insert, update, delete
    Column("entity", Text, nullable=False),  # the table
    Column("entity_id", Text),
    Column("before", JSONB),
    Column("after", JSONB),
)

#: Tables whose rows are machinery, not state a person would ask about: the outbox and inbox
#: (the events themselves are the record), held events waiting for their turn, cached
#: idempotent responses, UI sessions (they hold CSRF tokens), failed sign-ins (counted, not
#: changed) and dunning's own policy history table (`public.audit_log`, already a record).
MACHINERY_TABLES = (
    "alembic_version",
    "outbox",
    "inbox",
    "held_event",
    "idempotency_record",
    "ui_session",
    "ui_login_failure",
    "audit_log",
)

#: Columns never copied into the log: secrets and their hashes.
REDACTED_COLUMNS = ("token_hash", "password_hash", "api_tokens")


# --- the schema, for migrations ---------------------------------------------------------

_CREATE = [
    f"CREATE SCHEMA IF NOT EXISTS {AUDIT_SCHEMA}",
    f"""
    CREATE TABLE {AUDIT_SCHEMA}.audit_log (
        id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        at timestamptz NOT NULL DEFAULT now(),
        actor text NOT NULL,
        actor_role text,
        actor_token_id text,
        request text,
        trace_id text,
        action text NOT NULL,
        entity text NOT NULL,
        entity_id text,
        before jsonb,
        after jsonb
    )
    """,
    f"CREATE INDEX ix_audit_log_entity ON {AUDIT_SCHEMA}.audit_log (entity, entity_id, id)",
    f"CREATE INDEX ix_audit_log_actor ON {AUDIT_SCHEMA}.audit_log (actor, id)",
    f"CREATE INDEX ix_audit_log_trace_id ON {AUDIT_SCHEMA}.audit_log (trace_id)",
    # History is not rewritten: not by a route, not by psql.
    f"""
    CREATE FUNCTION {AUDIT_SCHEMA}.refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION 'audit_log is append-only: % refused', TG_OP
            USING ERRCODE = 'insufficient_privilege';
    END $$
    """,
    f"""
    CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON {AUDIT_SCHEMA}.audit_log
    FOR EACH ROW EXECUTE FUNCTION {AUDIT_SCHEMA}.refuse_change()
    """,
    f"""
    CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON {AUDIT_SCHEMA}.audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION {AUDIT_SCHEMA}.refuse_change()
    """,
    # One function for every audited table; its arguments are the columns to leave out.
    f"""
    CREATE FUNCTION {AUDIT_SCHEMA}.record_change() RETURNS trigger LANGUAGE plpgsql AS $$
    DECLARE
        old_row jsonb;
        new_row jsonb;
        before_v jsonb;
        after_v jsonb;
    BEGIN
        IF TG_OP <> 'INSERT' THEN old_row := to_jsonb(OLD) - TG_ARGV; END IF;
        IF TG_OP <> 'DELETE' THEN new_row := to_jsonb(NEW) - TG_ARGV; END IF;
        IF TG_OP = 'UPDATE' THEN
            -- Only what changed: a status flip does not copy a whole rendered message.
            SELECT jsonb_object_agg(o.key, o.value), jsonb_object_agg(o.key, n.value)
              INTO before_v, after_v
              FROM jsonb_each(old_row) o JOIN jsonb_each(new_row) n USING (key)
             WHERE o.value IS DISTINCT FROM n.value;
            IF before_v IS NULL THEN RETURN NULL; END IF;
        ELSE
            before_v := old_row;
            after_v := new_row;
        END IF;
        INSERT INTO {AUDIT_SCHEMA}.audit_log
            (actor, actor_role, actor_token_id, request, trace_id,
             action, entity, entity_id, before, after)
        VALUES (
            coalesce(nullif(current_setting('duewise.actor', true), ''), 'system'),
            nullif(current_setting('duewise.actor_role', true), ''),
            nullif(current_setting('duewise.actor_token_id', true), ''),
            nullif(current_setting('duewise.request', true), ''),
            nullif(current_setting('duewise.trace_id', true), ''),
            lower(TG_OP),
            TG_TABLE_NAME,
            coalesce(new_row, old_row) ->> 'id',
            before_v,
            after_v
        );
        RETURN NULL;
    END $$
    """,
]


class _Op(Protocol):
    """The part of `alembic.op` the helpers use."""

    def execute(self, sqltext: Any) -> Any: ...


def create_audit_log(op: _Op) -> None:
    """Create the `audit` schema, its append-only `audit_log` and the recording function."""
    for statement in _CREATE:
        op.execute(statement)


def attach(op: _Op, table: str, *, redact: Iterable[str] = REDACTED_COLUMNS) -> None:
    """Record every row change of `table` (in schema public) in the audit log."""
    args = ", ".join(f"'{c}'" for c in redact)
    op.execute(
        f"CREATE TRIGGER {table}_audit AFTER INSERT OR UPDATE OR DELETE ON public.{table} "
        f"FOR EACH ROW EXECUTE FUNCTION {AUDIT_SCHEMA}.record_change({args})"
    )


def attach_all(op: _Op, *, exclude: Iterable[str] = MACHINERY_TABLES) -> None:
    """`attach` every table in schema public except `exclude` (done in SQL, so the tables
    another migration created before this one are covered too)."""
    excluded = ", ".join(f"'{t}'" for t in exclude)
    args = ", ".join(f"''{c}''" for c in REDACTED_COLUMNS)
    op.execute(
        f"""
        DO $$
        DECLARE t text;
        BEGIN
            FOR t IN SELECT tablename FROM pg_tables
                      WHERE schemaname = 'public' AND tablename NOT IN ({excluded})
            LOOP
                EXECUTE format(
                    'CREATE TRIGGER %I AFTER INSERT OR UPDATE OR DELETE ON public.%I '
                    'FOR EACH ROW EXECUTE FUNCTION {AUDIT_SCHEMA}.record_change({args})',
                    t || '_audit', t);
            END LOOP;
        END $$
        """
    )


def drop_audit_log(op: _Op) -> None:
    """Undo `create_audit_log` and every `attach` (a downgrade: dropping is a schema change)."""
    op.execute(
        """
        DO $$
        DECLARE r record;
        BEGIN
            FOR r IN SELECT tgname, tgrelid::regclass AS tbl FROM pg_trigger
                      WHERE tgname LIKE '%\\_audit' AND NOT tgisinternal
            LOOP
                EXECUTE format('DROP TRIGGER %I ON %s', r.tgname, r.tbl);
            END LOOP;
        END $$
        """
    )
    op.execute(f"DROP SCHEMA {AUDIT_SCHEMA} CASCADE")


# --- who is acting: set by the request, read by the trigger ---------------------------------


@dataclass(frozen=True)
class Actor:
    """Who the changes of the current request are made by, and what the request was."""

    name: str
    role: str | None = None
    token_id: str | None = None
    request: str | None = None


_ACTOR: contextvars.ContextVar[Actor | None] = contextvars.ContextVar(
    "duewise_audit_actor", default=None
)

READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def set_actor(actor: Actor) -> None:
    """Name who the current request's changes are made by (the request's own context)."""
    _ACTOR.set(actor)


def current_actor() -> Actor | None:
    return _ACTOR.get()


def current_trace_id() -> str | None:
    """The current trace id as 32 hex digits, or None outside a trace."""
    ctx = trace.get_current_span().get_span_context()
    return f"{ctx.trace_id:032x}" if ctx.trace_id else None


def _tag_transaction(session: Session, transaction: SessionTransaction, conn: Connection) -> None:
    actor = _ACTOR.get()
    if actor is None:
        return  # reads carry no actor: no extra round trip for them
    conn.execute(
        text(
            "SELECT set_config('duewise.actor', :actor, true),"
            " set_config('duewise.actor_role', :role, true),"
            " set_config('duewise.actor_token_id', :token_id, true),"
            " set_config('duewise.request', :request, true),"
            " set_config('duewise.trace_id', :trace_id, true)"
        ),
        {
            "actor": actor.name,
            "role": actor.role or "",
            "token_id": actor.token_id or "",
            "request": actor.request or "",
            "trace_id": current_trace_id() or "",
        },
    )


def install_session_hook() -> None:
    """Tag every session transaction begun inside a write request with its actor and trace
    (idempotent; SQLAlchemy runs the hook in the request's context, so it sees the actor)."""
    if not event.contains(Session, "after_begin", _tag_transaction):
        event.listen(Session, "after_begin", _tag_transaction)
