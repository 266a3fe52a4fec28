"""The risk consumer: the shared EventConsumer over invoice, dunning and notify events, with
risk's run handler, so that a partition's run of events is folded in one transaction.

Same contract as every consumer of the library: an inbox row per event in the transaction of
its effect, offsets committed only after; a run that fails is split until the failing record
is alone, which is retried and dead-lettered while the partition keeps moving.

Why runs: one transaction per event costs several round trips and a WAL flush per event; the
profile of a customer seen several times in a run is also locked, read and written once. A
poll's records of all partitions are tried as one run, after a short linger (LINGER_MS).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from duewise_events.consumer import Delivery, EventConsumer
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from risk.domain.thresholds import Thresholds
from risk.handlers import handlers_for, run_handler_for
from risk.models import INBOX_TABLE

#: Records folded in one transaction: a whole poll's (aiokafka's getmany returns up to 500
#: records), since the fold writes each customer once per run.
RUN_SIZE = 500
#: Under a trickle a poll brings a record or two: waiting this long for more, and folding a
#: poll's records of all partitions together, makes one transaction of what were several.
#: Its cost: this much latency, within issue #8's second of lag.
LINGER_MS = 100


class RiskConsumer(EventConsumer):
    """EventConsumer over the risk topics with risk's handlers and run handler."""

    def __init__(
        self,
        *,
        name: str,
        topics: Sequence[str],
        session_factory: async_sessionmaker[AsyncSession],
        bootstrap_servers: str,
        thresholds: Thresholds,
        batch_size: int = RUN_SIZE,
        poll_linger_ms: int = LINGER_MS,
        **kwargs: Any,
    ) -> None:
        fold_run = run_handler_for(thresholds)

        async def counted(session: AsyncSession, deliveries: Sequence[Delivery]) -> None:
            await fold_run(session, deliveries)
            self.batches_applied += 1

        super().__init__(
            name=name,
            topics=topics,
            handlers=handlers_for(thresholds),
            run_handler=counted,
            session_factory=session_factory,
            inbox=INBOX_TABLE,
            bootstrap_servers=bootstrap_servers,
            batch_size=batch_size,
            poll_linger_ms=poll_linger_ms,
            # Customers' profiles are locked (advisory locks, in id order) by the fold itself,
            # so records of several partitions can share a transaction.
            runs_across_partitions=True,
            **kwargs,
        )
        self.thresholds = thresholds
        #: Runs handed to the run handler (more than one event each): tests see the path taken.
        self.batches_applied = 0
