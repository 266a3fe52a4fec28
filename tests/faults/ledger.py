"""The fault suite's ledger: one row per scenario, printed as a table at the end of the run.

A scenario records what went in and what came out; `Row.check()` fails the test on any loss,
duplicate or reminder for a paid invoice, and the terminal summary prints every row whether
it passed or not, so the table in the CI log is the evidence the README quotes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

ROWS: list[Row] = []


@dataclass
class Row:
    scenario: str
    events_in: int
    effects_out: int
    lost: int = 0
    duplicated: int = 0
    wrong_reminders: int = 0
    notes: list[str] = field(default_factory=list)

    def check(self) -> None:
        """Fail the calling test unless nothing was lost, doubled or sent for a paid invoice."""
        problems = [
            f"{n} {what}"
            for n, what in (
                (self.lost, "lost"),
                (self.duplicated, "duplicated"),
                (self.wrong_reminders, "reminders for paid invoices"),
            )
            if n
        ]
        assert not problems, (
            f"{self.scenario}: " + ", ".join(problems) + "; " + "; ".join(self.notes)
        )


def record(row: Row) -> Row:
    """Keep the row for the summary table (also when its check then fails)."""
    ROWS.append(row)
    return row


HEADERS = ("scenario", "events in", "effects out", "lost", "duplicated", "reminders for paid")


def table() -> list[str]:
    cells = [
        (r.scenario, r.events_in, r.effects_out, r.lost, r.duplicated, r.wrong_reminders)
        for r in ROWS
    ]
    widths = [max(len(str(c)) for c in col) for col in zip(HEADERS, *cells, strict=False)]
    line = "  ".join(f"{{:<{w}}}" for w in widths)
    return [line.format(*HEADERS), line.format(*("-" * w for w in widths))] + [
        line.format(*c) for c in cells
    ]
