"""What applying one event produces besides the new state: rows for the portfolio ledger
and the reminder log, and the signals raised or cleared. Pure data; the live path writes
them with outbox events, the rebuild writes them in bulk without events."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from duewise_events.catalogue import RiskScoreChanged, RiskSignalCleared, RiskSignalRaised


@dataclass(frozen=True)
class Movement:
    """One change of one invoice's balance: the ledger behind DSO, CEI and aging."""

    customer_id: str
    invoice_id: str
    currency: str
    on: dt.date
    due: dt.date
    amount: int  # signed minor units: + issued or reopened, - paid, credited, voided
    kind: str  # issued | payment | reversal | credit | void | write_off | dispute
    ref: str


@dataclass(frozen=True)
class ReminderFact:
    """A reminder step that went (or was due to go) to a customer: for step recovery."""

    id: str  # the notice id (ReminderDue) or the cause id of a MessageSent
    customer_id: str
    step_key: str
    on: dt.date
    currency: str | None
    invoice_ids: tuple[str, ...]
    sent: bool  # True when notify confirmed it went out


@dataclass
class Effects:
    movements: list[Movement] = field(default_factory=list)
    reminders: list[ReminderFact] = field(default_factory=list)
    raised: list[RiskSignalRaised] = field(default_factory=list)
    cleared: list[RiskSignalCleared] = field(default_factory=list)
    score_changed: RiskScoreChanged | None = None
    applied: int = 0  # events applied (the event itself and any it released)
    held: int = 0  # events now held
