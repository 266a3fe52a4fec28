"""Rendering: the Jinja2 templates, their filters, and the headers every page carries."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import re
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.templating import Jinja2Templates
from starlette.responses import Response

from notify.render.formatting import format_money

HERE = Path(__file__).parent
TEMPLATES = Jinja2Templates(directory=HERE / "templates")
STATIC_DIR = HERE / "static"

#: No inline script or style, nothing from another origin, never framed.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def _money(amount: int | None, currency: str) -> str:
    return "—" if amount is None else format_money(int(amount), currency, "en-US")


def _when(value: dt.datetime | dt.date | str | None) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value) if "T" in value else dt.date.fromisoformat(value)
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    return value.isoformat()


def _words(value: str | None) -> str:
    return (value or "").replace("_", " ")


TEMPLATES.env.filters["money"] = _money
TEMPLATES.env.filters["when"] = _when
TEMPLATES.env.filters["words"] = _words


_STYLE_BLOCK = re.compile(r"<style[^>]*>(.*?)</style>", re.IGNORECASE | re.DOTALL)


def style_hashes(html: str | None) -> tuple[str, ...]:
    """CSP sources for the `<style>` blocks of an email shown in a sandboxed `srcdoc` frame.

    A srcdoc document inherits the page's policy, so its stylesheet would be blocked by
    `style-src 'self'`; allowing exactly these blocks by hash keeps every other inline style
    (and, with `script-src 'self'` and the empty `sandbox`, every script) out."""
    if not html:
        return ()
    return tuple(
        "'sha256-" + base64.b64encode(hashlib.sha256(m.encode()).digest()).decode() + "'"
        for m in _STYLE_BLOCK.findall(html)
    )


def render(
    request: Request,
    name: str,
    context: dict[str, Any],
    status_code: int = 200,
    style_hashes: tuple[str, ...] = (),
) -> Response:
    """A page from `name` with the security headers (`style_hashes`: see `style_hashes`)."""
    response = TEMPLATES.TemplateResponse(request, name, context, status_code=status_code)
    response.headers.update(SECURITY_HEADERS)
    if style_hashes:
        csp = SECURITY_HEADERS["Content-Security-Policy"]
        response.headers["Content-Security-Policy"] = csp.replace(
            "style-src 'self'", "style-src 'self' " + " ".join(sorted(set(style_hashes)))
        )
    return response


def error_page(request: Request, sentence: str, status_code: int, user: Any = None) -> Response:
    """One plain sentence, with the status it deserves."""
    return render(
        request, "error.html", {"message": sentence, "user": user}, status_code=status_code
    )
