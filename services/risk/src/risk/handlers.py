"""What the risk service does with each fact it consumes: fold it into the customer's profile.

`HANDLERS` is the table of contents for the EventConsumer: every invoice.events type, the
dunning.events and notify.events types that say something about payment behaviour. Each runs
inside the consumer's transaction (inbox row + effect). Events that arrive before the customer
or invoice they depend on are held in the customer's state and re-applied, in arrival order,
when it arrives (see risk.domain.fold).

`run_handler_for` is the same effect for a run of events (the library's RunHandler): each
customer's profile locked, read and written once for the run instead of once per event.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

from duewise_events.catalogue import Event
from duewise_events.consumer import Delivery, RunHandler
from duewise_events.envelope import Envelope
from sqlalchemy.ext.asyncio import AsyncSession

from risk.domain.fold import CONSUMED
from risk.domain.thresholds import DEFAULT, Thresholds
from risk.service.live import apply_batch, apply_event

Handler = Callable[[AsyncSession, Event, Envelope], Awaitable[None]]


def handlers_for(thresholds: Thresholds) -> dict[type[Event], Handler]:
    """The consumer's map of event class to handler, with these thresholds."""

    async def handle(session: AsyncSession, event: Event, envelope: Envelope) -> None:
        await apply_event(session, event, envelope.id, thresholds)

    return {cls: handle for cls in CONSUMED}


def run_handler_for(thresholds: Thresholds) -> RunHandler:
    """The consumer's run handler: a run of new events folded in order, as one by one."""

    async def handle_run(session: AsyncSession, deliveries: Sequence[Delivery]) -> None:
        await apply_batch(session, [(d.event, d.envelope.id) for d in deliveries], thresholds)

    return handle_run


#: With the default thresholds (the CLI passes the configured ones).
HANDLERS = handlers_for(DEFAULT)
