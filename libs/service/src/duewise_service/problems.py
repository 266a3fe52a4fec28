"""RFC 9457 `application/problem+json` for every error a service returns."""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger("duewise.problems")

PROBLEM_BASE = "https://duewise.dev/problems/"
PROBLEM_JSON = "application/problem+json"


class DomainError(Exception):
    """A request the domain refuses; becomes a problem+json response.

    `field` is a JSON-pointer-like path into the request body (`allocations/0/amount`).
    `code` is the last segment of the problem `type` URI; derived from `title` by default.
    """

    def __init__(
        self,
        status: int,
        title: str,
        detail: str,
        field: str | None = None,
        *,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.title = title
        self.detail = detail
        self.field = field
        self.code = code or slug(title)
        self.headers = headers

    def body(self, instance: str | None = None) -> dict[str, Any]:
        """The problem document."""
        doc: dict[str, Any] = {
            "type": PROBLEM_BASE + self.code,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
        }
        if instance:
            doc["instance"] = instance
        if self.field is not None:
            doc["field"] = self.field
            doc["errors"] = [{"pointer": f"#/{self.field}", "detail": self.detail}]
        return doc


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def problem_response(
    status: int, body: dict[str, Any], headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def not_found(what: str, ident: str, field: str | None = None) -> DomainError:
    """A 404 (or, with `field`, a 422 naming the body field that points nowhere)."""
    if field is not None:
        return DomainError(
            422,
            f"Unknown {what}",
            f"{field}: no {what} {ident!r}",
            field,
            code=f"unknown-{slug(what)}",
        )
    return DomainError(
        404, f"{what.capitalize()} not found", f"no {what} {ident!r}", code="not-found"
    )


def _pointer(loc: Sequence[int | str]) -> str:
    parts = list(loc[1:]) if loc and loc[0] == "body" else list(loc)
    return "#/" + "/".join(str(p).replace("~", "~0").replace("/", "~1") for p in parts)


_MESSAGES = {
    "int_type": "must be an integer (money is an integer count of minor units, never a float)",
    "greater_than_equal": "must not be negative",
    "extra_forbidden": "is not a known field",
    "missing": "is required",
}


def _message(err: dict[str, Any]) -> str:
    msg = _MESSAGES.get(err["type"], str(err.get("msg", "is invalid")))
    if err["type"] == "greater_than_equal" and err.get("ctx", {}).get("ge") not in (0, None):
        msg = str(err["msg"])
    return msg.removeprefix("Value error, ")


class ValidationProblem(Exception):
    """Pydantic errors found after parsing (say, a policy inside the body), with the body
    path they sit under, so the 422 names the field as the client sent it."""

    def __init__(self, errors: Sequence[Any], prefix: Sequence[str | int]) -> None:
        super().__init__("invalid")
        self.errors = errors
        self.prefix = tuple(prefix)


def validation_problem(
    errors: Sequence[Any], instance: str | None = None, *, prefix: Sequence[str | int] = ()
) -> dict[str, Any]:
    """A 422 problem whose `errors` name each invalid field by JSON pointer."""
    items = []
    for err in errors:
        loc = tuple(err.get("loc", ()))
        if prefix:
            loc = ("body", *prefix, *(loc[1:] if loc and loc[0] == "body" else loc))
        pointer = _pointer(loc)
        field = pointer.removeprefix("#/")
        message = _message(err)
        item: dict[str, Any] = {
            "pointer": pointer,
            "field": field or "(body)",
            "loc": list(loc),
            "type": err.get("type"),
            "detail": f"{field}: {message}" if field else message,
        }
        items.append(item)
    detail = "; ".join(i["detail"] for i in items) or "the request is invalid"
    doc: dict[str, Any] = {
        "type": PROBLEM_BASE + "validation-error",
        "title": "Invalid request",
        "status": 422,
        "detail": detail,
        "errors": items,
    }
    if instance:
        doc["instance"] = instance
    return doc


async def _on_domain(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, DomainError)
    return problem_response(exc.status, exc.body(request.url.path), exc.headers)


async def _on_validation(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return problem_response(422, validation_problem(exc.errors(), request.url.path))


async def _on_nested_validation(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ValidationProblem)
    return problem_response(
        422, validation_problem(exc.errors, request.url.path, prefix=exc.prefix)
    )


async def _on_http(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    title = {404: "Not found", 405: "Method not allowed", 401: "Unauthorized", 403: "Forbidden"}
    body = {
        "type": PROBLEM_BASE + slug(title.get(exc.status_code, f"http-{exc.status_code}")),
        "title": title.get(exc.status_code, "HTTP error"),
        "status": exc.status_code,
        "detail": str(exc.detail),
        "instance": request.url.path,
    }
    return problem_response(exc.status_code, body, getattr(exc, "headers", None))


async def _on_integrity(request: Request, exc: Exception) -> JSONResponse:
    # A race the service's own checks could not see (two writers, one unique value).
    assert isinstance(exc, IntegrityError)
    constraint = getattr(getattr(exc.orig, "__cause__", None), "constraint_name", None)
    body = {
        "type": PROBLEM_BASE + "conflict",
        "title": "Conflict",
        "status": 409,
        "detail": f"the request conflicts with existing data ({constraint or 'unique constraint'})",
        "instance": request.url.path,
    }
    return problem_response(409, body)


def _sqlstate(exc: DBAPIError) -> str:
    orig = exc.orig
    state = getattr(orig, "sqlstate", None) or getattr(
        getattr(orig, "__cause__", None), "sqlstate", None
    )
    return str(state or "")


async def _on_database(request: Request, exc: Exception) -> JSONResponse:
    # SQLSTATE class 22 is "data exception": a value the client sent that PostgreSQL cannot
    # hold (a NUL character in text, a number past bigint, a date past year 294276). That is
    # the client's mistake, so a 422 naming it; anything else is still our 500.
    assert isinstance(exc, DBAPIError)
    if not _sqlstate(exc).startswith("22"):
        return await _on_unhandled(request, exc)
    reason = str(getattr(getattr(exc.orig, "__cause__", None), "args", [""])[0] or "")
    body = {
        "type": PROBLEM_BASE + "invalid-value",
        "title": "Invalid value",
        "status": 422,
        "detail": "a value in the request cannot be stored"
        + (f" ({reason.splitlines()[0][:200]})" if reason else ""),
        "instance": request.url.path,
    }
    return problem_response(422, body)


# SQLSTATE classes that mean "the server is not there right now", not "this request is
# wrong": 08 connection exception; 57P01-57P03 admin shutdown, crash shutdown, cannot
# connect now (a restart, a failover).
_OUTAGE_STATES = ("08", "57P")


def _database_unavailable(exc: BaseException) -> bool:
    """The database went away under the request (restart, failover, network)."""
    if isinstance(exc, DBAPIError):
        return exc.connection_invalidated or _sqlstate(exc).startswith(_OUTAGE_STATES)
    # The pool raises the driver's own errors when a new connection cannot be made:
    # refused or reset by a server going down, or its "cannot connect now" while starting.
    if isinstance(exc, ConnectionError):
        return True
    return str(getattr(exc, "sqlstate", "") or "").startswith(_OUTAGE_STATES)


async def _on_unhandled(request: Request, exc: Exception) -> JSONResponse:
    if _database_unavailable(exc):
        # Not a bug: a 503 the client retries (a write with the same Idempotency-Key, which
        # replays it if it had committed after all). The pool drops the dead connections.
        log.warning("database unavailable on %s %s: %r", request.method, request.url.path, exc)
        body = {
            "type": PROBLEM_BASE + "database-unavailable",
            "title": "Service unavailable",
            "status": 503,
            "detail": "the database cannot be reached right now; retry in a moment "
            "(a write with the same Idempotency-Key)",
            "instance": request.url.path,
        }
        return problem_response(503, body, {"Retry-After": "1"})
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    body = {
        "type": PROBLEM_BASE + "internal-error",
        "title": "Internal server error",
        "status": 500,
        "detail": "an unexpected error occurred; it has been logged",
        "instance": request.url.path,
    }
    return problem_response(500, body)


async def _on_pool_timeout(request: Request, exc: Exception) -> JSONResponse:
    # Every pooled connection stayed busy for the pool's whole timeout: the service is
    # overloaded, not broken. A 503 the client backs off from, not a 500 (the load bench
    # found 500s here at 300 writes/s on one API process).
    log.warning("connection pool exhausted on %s %s", request.method, request.url.path)
    body = {
        "type": PROBLEM_BASE + "overloaded",
        "title": "Service unavailable",
        "status": 503,
        "detail": "the service is busy; retry in a moment (a write with the same Idempotency-Key)",
        "instance": request.url.path,
    }
    return problem_response(503, body, {"Retry-After": "1"})


def install_problem_handlers(app: FastAPI) -> None:
    """Make every error, expected or not, a problem+json response."""
    app.add_exception_handler(DomainError, _on_domain)
    app.add_exception_handler(RequestValidationError, _on_validation)
    app.add_exception_handler(ValidationProblem, _on_nested_validation)
    app.add_exception_handler(StarletteHTTPException, _on_http)
    app.add_exception_handler(IntegrityError, _on_integrity)
    app.add_exception_handler(DBAPIError, _on_database)
    app.add_exception_handler(PoolTimeout, _on_pool_timeout)
    # The pool raises the driver's own errors when it cannot connect (refused, reset, "the
    # database system is starting up"). Handled here, not only by the catch-all: after the
    # catch-all's answer the server also closes the connection, and a client that had
    # already sent its next request on it sees a dropped connection instead of the 503.
    driver_errors: tuple[type[Exception], ...] = (ConnectionError, *_driver_errors())
    for driver_error in driver_errors:
        app.add_exception_handler(driver_error, _on_unhandled)
    app.add_exception_handler(Exception, _on_unhandled)


def _driver_errors() -> tuple[type[Exception], ...]:
    try:
        import asyncpg
    except ImportError:  # pragma: no cover - every service runs on asyncpg
        return ()
    return (asyncpg.PostgresError, asyncpg.InterfaceError)
