"""The UI's answers when a page is missing or fails: one plain sentence, never a stack trace.

The notify app also serves its JSON API; its paths keep their RFC 9457 problem documents.
Everything else is the UI, where a browser gets an HTML page with a sentence it can act on.
"""

from __future__ import annotations

import inspect

from fastapi import FastAPI, Request
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import PlainTextResponse, Response

from notify.ui.pages import error_page

#: Paths of notify's API and operations endpoints: their errors stay machine-readable.
API_PREFIXES = ("/v1/", "/docs", "/redoc", "/openapi.json", "/healthz", "/readyz", "/metrics")

SENTENCES = {
    404: "There is no such page here; check the address, or start again from the worklist.",
    405: "This page cannot be used that way; start again from the worklist.",
}
FAILED = (
    "Something went wrong on our side while preparing this page; nothing was changed. "
    "Try again in a minute, and tell an admin if it keeps happening."
)


def is_api(path: str) -> bool:
    return path == "/v1" or path.startswith(API_PREFIXES)


def install_error_pages(app: FastAPI) -> None:
    """HTML 404/405 pages and a 500 page for the UI's paths; the API's handlers otherwise.

    Call after the app's own handlers are installed: these wrap theirs (HTTP errors and the
    catch-all), which still answer for the API's paths.
    """
    api_handler = app.exception_handlers.get(StarletteHTTPException)
    api_crash = app.exception_handlers.get(Exception)

    async def on_http(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        if is_api(request.url.path) and api_handler is not None:
            answer = api_handler(request, exc)
            return await answer if inspect.isawaitable(answer) else answer
        sentence = SENTENCES.get(exc.status_code, "This page cannot be shown.")
        return error_page(request, sentence, exc.status_code)

    async def on_crash(request: Request, exc: Exception) -> Response:
        # Starlette logs the traceback; the user only ever sees the sentence.
        if is_api(request.url.path):
            if api_crash is None:
                return PlainTextResponse("Internal Server Error", status_code=500)
            answer = api_crash(request, exc)
            return await answer if inspect.isawaitable(answer) else answer
        return error_page(request, FAILED, 500)

    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(Exception, on_crash)
