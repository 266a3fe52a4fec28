"""INVOICE_ACCESS_LOG=false (the default) really leaves out the per-request access line."""

from __future__ import annotations

import logging

import pytest
from invoice.config import Settings
from invoice.main import create_app


@pytest.mark.parametrize("wanted", [False, True])
def test_uvicorn_writes_access_lines_only_when_asked(wanted: bool) -> None:
    # uvicorn decides per connection with `hasHandlers()` on its access logger; the JSON
    # logging set up by create_app would otherwise hand it the root handler.
    create_app(Settings(access_log=wanted))
    try:
        assert logging.getLogger("uvicorn.access").hasHandlers() is wanted
    finally:
        create_app(Settings())
    assert not logging.getLogger("uvicorn.access").hasHandlers()
