"""RFC 9457 `application/problem+json` for every error the service returns."""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger("dunning.problems")

PROBLEM_BASE = "https://duewise.dev/problems/"
PROBLEM_JSON = "application/problem+json"


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


class DomainError(Exception):
    """A request the domain refuses; `field` is a JSON-pointer-like path into the body."""

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
        self.status, self.title, self.detail, self.field = status, title, detail, field
        self.code = code or slug(title)
        self.headers = headers

    def body(self, instance: str) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "type": PROBLEM_BASE + self.code,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
            "instance": instance,
        }
        if self.field is not None:
            doc["field"] = self.field
            doc["errors"] = [{"pointer": f"#/{self.field}", "detail": self.detail}]
        return doc


def not_found(what: str, ident: str) -> DomainError:
    return DomainError(404, f"{what.capitalize()} not found", f"no {what} {ident!r}")


def validation_problem(
    errors: Sequence[Any], instance: str, *, prefix: Sequence[str | int] = ()
) -> dict[str, Any]:
    """A 422 problem whose `errors` name each invalid field by JSON pointer."""
    items = []
    for err in errors:
        loc = list(err.get("loc", ()))
        if loc and loc[0] == "body":
            loc = loc[1:]
        loc = [*prefix, *loc]
        field = "/".join(str(p) for p in loc)
        message = str(err.get("msg", "is invalid")).removeprefix("Value error, ")
        items.append(
            {
                "pointer": f"#/{field}",
                "field": field or "(body)",
                "type": err.get("type"),
                "detail": f"{field}: {message}" if field else message,
            }
        )
    return {
        "type": PROBLEM_BASE + "validation-error",
        "title": "Invalid request",
        "status": 422,
        "detail": "; ".join(i["detail"] for i in items) or "the request is invalid",
        "errors": items,
        "instance": instance,
    }


class ValidationProblem(Exception):
    """Pydantic errors found after parsing (a policy spec), with the body path they sit under."""

    def __init__(self, errors: Sequence[Any], prefix: Sequence[str | int]) -> None:
        super().__init__("invalid")
        self.errors = errors
        self.prefix = prefix


def _json(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


async def _on_domain(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, DomainError)
    return _json(exc.status, exc.body(request.url.path), exc.headers)


async def _on_validation(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return _json(422, validation_problem(exc.errors(), request.url.path))


async def _on_spec(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ValidationProblem)
    return _json(422, validation_problem(exc.errors, request.url.path, prefix=exc.prefix))


async def _on_http(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    body = {
        "type": PROBLEM_BASE + f"http-{exc.status_code}",
        "title": "HTTP error",
        "status": exc.status_code,
        "detail": str(exc.detail),
        "instance": request.url.path,
    }
    return _json(exc.status_code, body, getattr(exc, "headers", None))


async def _on_unhandled(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    body = {
        "type": PROBLEM_BASE + "internal-error",
        "title": "Internal server error",
        "status": 500,
        "detail": "an unexpected error occurred; it has been logged",
        "instance": request.url.path,
    }
    return _json(500, body)


def install_problem_handlers(app: FastAPI) -> None:
    """Make every error, expected or not, a problem+json response."""
    app.add_exception_handler(DomainError, _on_domain)
    app.add_exception_handler(RequestValidationError, _on_validation)
    app.add_exception_handler(ValidationProblem, _on_spec)
    app.add_exception_handler(StarletteHTTPException, _on_http)
    app.add_exception_handler(Exception, _on_unhandled)
