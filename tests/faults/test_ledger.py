"""The ledger's own promise: a scenario with any loss, duplicate or wrong reminder fails."""

from __future__ import annotations

import ledger
import pytest


def test_a_clean_row_passes_and_a_dirty_one_fails_naming_the_problem() -> None:
    ledger.Row("clean", events_in=10, effects_out=10).check()
    with pytest.raises(AssertionError, match="2 duplicated, 1 reminders for paid invoices"):
        ledger.Row("dirty", 10, 12, duplicated=2, wrong_reminders=1).check()


def test_the_table_lists_every_recorded_row() -> None:
    before = len(ledger.ROWS)
    ledger.record(ledger.Row("table check", events_in=3, effects_out=3))
    lines = ledger.table()
    assert lines[0].split()[:3] == ["scenario", "events", "in"]
    assert "table check" in lines[-1]
    assert len(lines) == 2 + before + 1
    ledger.ROWS.pop()
