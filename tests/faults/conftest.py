"""Fault suite plumbing shared by every scenario: the ledger table in the terminal summary."""

from __future__ import annotations

import ledger
import pytest


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not ledger.ROWS:
        return
    terminalreporter.section("duewise fault suite")
    for line in ledger.table():
        terminalreporter.write_line(line)
