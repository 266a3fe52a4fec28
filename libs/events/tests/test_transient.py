"""What the consumer retries without limit (the database's trouble) and what it counts as the
record's fault (three attempts, then the DLT). Fault scenario 5 restarts a real PostgreSQL;
this pins the classification of the errors seen there."""

from __future__ import annotations

import pytest
from duewise_events.consumer import _is_transient
from sqlalchemy.exc import DBAPIError


class _Driver(Exception):
    """Stands for asyncpg's errors, which carry their SQLSTATE."""

    def __init__(self, sqlstate: str) -> None:
        super().__init__(sqlstate)
        self.sqlstate = sqlstate


@pytest.mark.parametrize(
    "exc",
    [
        _Driver("57P03"),  # CannotConnectNowError: starting up / shutting down, unwrapped
        _Driver("08003"),  # ConnectionDoesNotExistError, unwrapped
        DBAPIError("SELECT 1", {}, _Driver("57P01")),  # admin shutdown, wrapped
        DBAPIError("COMMIT", {}, ValueError("broken"), connection_invalidated=True),
        ConnectionRefusedError(111, "Connection refused"),
    ],
)
def test_a_database_outage_is_transient(exc: BaseException) -> None:
    assert _is_transient(exc)


@pytest.mark.parametrize(
    "exc",
    [ValueError("bad data"), DBAPIError("INSERT", {}, _Driver("23505")), KeyError("x")],
)
def test_the_records_own_failure_is_not(exc: BaseException) -> None:
    assert not _is_transient(exc)
