"""Test data for the risk service: a `Script` writes one customer's history as catalogue
events (balances tracked as the invoice service would), and helpers apply them."""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import secrets
import time
from typing import Any, TypeVar

from aiokafka import AIOKafkaProducer
from duewise_dev.broker import ensure_topics
from duewise_events.catalogue import (
    DUNNING_EVENTS,
    INVOICE_EVENTS,
    NOTIFY_EVENTS,
    AllocationSnapshot,
    CustomerCreated,
    CustomerUpdated,
    DisputeOpened,
    DisputeResolved,
    Event,
    InvoiceIssued,
    MessageSent,
    PaymentMethod,
    PaymentReceived,
    PaymentReversed,
    PromiseBroken,
    PromiseKept,
    ReminderDue,
    ReminderInvoice,
    ResponseLogged,
    ResponseReason,
    dead_letter_topic,
)
from duewise_events.consumer import Outcome
from duewise_events.envelope import Envelope
from risk.consumer import RiskConsumer
from risk.domain.thresholds import Thresholds
from risk.service.live import apply_event
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

_seq = itertools.count(1)
# Customer ids unique to this session: the topics are shared with other services' tests,
# whose customers are named cus_1, cus_2, ... too, and a rebuild reads every record.
_RUN = secrets.token_hex(3)
E = TypeVar("E", bound=Event)
TH = Thresholds()


def d(text_: str) -> dt.date:
    return dt.date.fromisoformat(text_)


def at(day: dt.date, hour: int = 12) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day, hour, tzinfo=dt.UTC)


class Script:
    """One customer's history, in order; `events` is what the invoice service etc. emitted."""

    def __init__(
        self, cid: str | None = None, *, currency: str = "EUR", credit_limit: int | None = None
    ) -> None:
        self.cid = cid or f"cus_{_RUN}_{next(_seq)}"
        self.currency = currency
        self.credit_limit = credit_limit
        self.events: list[Event] = []
        self.balances: dict[str, int] = {}
        self.invoices: dict[str, InvoiceIssued] = {}

    def _add(self, event: E) -> E:
        self.events.append(event)
        return event

    def customer(self) -> CustomerCreated:
        return self._add(
            CustomerCreated(
                customer_id=self.cid,
                name=f"Customer {self.cid}",
                currency=self.currency,
                timezone="UTC",
                country="DE",
                locale="de-DE",
                payment_terms_days=30,
                credit_limit=self.credit_limit,
            )
        )

    def contacts_changed(self) -> CustomerUpdated:
        return self._add(
            CustomerUpdated(
                customer_id=self.cid,
                name=f"Customer {self.cid}",
                currency=self.currency,
                timezone="UTC",
                country="DE",
                locale="de-DE",
                payment_terms_days=30,
                credit_limit=self.credit_limit,
                changed=["contacts"],
            )
        )

    def invoice(self, issued: dt.date, total: int = 1000_00, terms: int = 30) -> InvoiceIssued:
        n = next(_seq)
        inv = InvoiceIssued(
            customer_id=self.cid,
            invoice_id=f"inv_{n}",
            number=f"INV-{n:05d}",
            issue_date=issued,
            due_date=issued + dt.timedelta(days=terms),
            currency=self.currency,
            total=total,
            balance=total,
        )
        self.balances[inv.invoice_id] = total
        self.invoices[inv.invoice_id] = inv
        return self._add(inv)

    def pay(
        self,
        inv: InvoiceIssued,
        on: dt.date,
        amount: int | None = None,
        method: PaymentMethod = "check",
    ) -> PaymentReceived:
        amount = self.balances[inv.invoice_id] if amount is None else amount
        left = self.balances[inv.invoice_id] - amount
        self.balances[inv.invoice_id] = left
        return self._add(
            PaymentReceived(
                customer_id=self.cid,
                payment_id=f"pay_{next(_seq)}",
                amount=amount,
                currency=self.currency,
                method=method,
                received_at=on,
                allocations=[
                    AllocationSnapshot(
                        invoice_id=inv.invoice_id,
                        amount=amount,
                        invoice_balance=left,
                        invoice_status="paid" if left == 0 else "partially_paid",
                        due_date=inv.due_date,
                    )
                ],
            )
        )

    def reverse(self, pay: PaymentReceived, on: dt.date, reason: str = "bounced check") -> Event:
        allocs = []
        for a in pay.allocations:
            self.balances[a.invoice_id] += a.amount
            allocs.append(
                AllocationSnapshot(
                    invoice_id=a.invoice_id,
                    amount=a.amount,
                    invoice_balance=self.balances[a.invoice_id],
                    invoice_status="open",
                    due_date=a.due_date,
                )
            )
        return self._add(
            PaymentReversed(
                customer_id=self.cid,
                payment_id=pay.payment_id,
                amount=pay.amount,
                currency=self.currency,
                method=pay.method,
                reason=reason,
                allocations=allocs,
                reversed_at=at(on),
            )
        )

    def dispute(self, inv: InvoiceIssued, on: dt.date) -> DisputeOpened:
        return self._add(
            DisputeOpened(
                customer_id=self.cid,
                dispute_id=f"dsp_{next(_seq)}",
                invoice_id=inv.invoice_id,
                reason="wrong quantity",
                opened_at=at(on),
            )
        )

    def resolve(
        self, dispute: DisputeOpened, on: dt.date, outcome: str = "customer_wrong"
    ) -> Event:
        return self._add(
            DisputeResolved(
                customer_id=self.cid,
                dispute_id=dispute.dispute_id,
                invoice_id=dispute.invoice_id,
                outcome=outcome,
                invoice_balance=self.balances[dispute.invoice_id],
                invoice_status="open",
                resolved_at=at(on),
            )
        )

    def promise_broken(self, inv: InvoiceIssued, promised: dt.date) -> Event:
        return self._add(
            PromiseBroken(
                customer_id=self.cid,
                promise_id=f"prm_{next(_seq)}",
                invoice_ids=[inv.invoice_id],
                amount=self.balances[inv.invoice_id],
                paid=0,
                currency=self.currency,
                promised_date=promised,
            )
        )

    def promise_kept(self, inv: InvoiceIssued, on: dt.date) -> Event:
        return self._add(
            PromiseKept(
                customer_id=self.cid,
                promise_id=f"prm_{next(_seq)}",
                invoice_ids=[inv.invoice_id],
                amount=inv.total,
                currency=self.currency,
                promised_date=on,
                kept_on=on,
            )
        )

    def response(self, on: dt.date, reason: ResponseReason) -> Event:
        return self._add(
            ResponseLogged(
                customer_id=self.cid,
                response_id=f"rsp_{next(_seq)}",
                reason=reason,
                source="reply_link",
                logged_at=at(on),
            )
        )

    def reminder(self, on: dt.date, step_key: str, *invs: InvoiceIssued) -> ReminderDue:
        notice = ReminderDue(
            customer_id=self.cid,
            notice_id=f"ntc_{next(_seq)}",
            step_key=step_key,
            step_index=int(step_key.rsplit("_", 1)[-1]) if step_key[-1].isdigit() else 0,
            channel="email",
            template=step_key,
            tone="friendly",
            local_date=on,
            send_at=at(on, 9),
            invoices=[
                ReminderInvoice(
                    invoice_id=i.invoice_id,
                    number=i.number,
                    due_date=i.due_date,
                    balance=self.balances[i.invoice_id],
                    currency=self.currency,
                    days_overdue=(on - i.due_date).days,
                )
                for i in invs
            ],
            currency=self.currency,
            total_balance=sum(self.balances[i.invoice_id] for i in invs),
            policy_id="pol_1",
            policy_version=1,
        )
        self._add(notice)
        self._add(
            MessageSent(
                customer_id=self.cid,
                message_id=f"msg_{next(_seq)}",
                kind="reminder",
                channel="email",
                cause_type=ReminderDue.TYPE,
                cause_id=notice.notice_id,
                invoice_ids=[i.invoice_id for i in invs],
                step_key=step_key,
                sent_at=at(on, 9),
            )
        )
        return notice


async def feed(
    maker: async_sessionmaker[AsyncSession], events: list[Event], th: Thresholds = TH
) -> None:
    """Apply events as the consumer would: each in its own transaction."""
    for event in events:
        async with maker() as session, session.begin():
            await apply_event(session, event, f"evt_{next(_seq)}", th)


async def outbox(maker: async_sessionmaker[AsyncSession], type_: str) -> list[dict[str, Any]]:
    async with maker() as session:
        rows = await session.execute(
            text("SELECT payload FROM outbox WHERE type = :t ORDER BY id"), {"t": type_}
        )
        return [dict(r[0]) for r in rows]


# --- the broker ---------------------------------------------------------------------------

TOPICS = (INVOICE_EVENTS, DUNNING_EVENTS, NOTIFY_EVENTS)
SOURCES = {
    INVOICE_EVENTS: "duewise/invoice",
    DUNNING_EVENTS: "duewise/dunning",
    NOTIFY_EVENTS: "duewise/notify",
}


async def ensure_risk_topics(bootstrap: str) -> None:
    await ensure_topics(
        bootstrap, {t: 6 for t in TOPICS} | {dead_letter_topic(t): 6 for t in TOPICS}
    )


async def send(producer: AIOKafkaProducer, event: Event) -> Envelope:
    env = Envelope.wrap(event, source=SOURCES[event.TOPIC])
    await producer.send_and_wait(
        event.TOPIC, value=env.body(), key=env.key.encode(), headers=env.headers()
    )
    return env


class LiveConsumer:
    """The service's consumer (the shared EventConsumer, a batch per transaction) over the
    three topics, with its outcomes kept for the test."""

    def __init__(
        self, maker: async_sessionmaker[AsyncSession], bootstrap: str, group: str | None = None
    ) -> None:
        self.outcomes: list[Outcome] = []
        self.consumer = RiskConsumer(
            name=group or f"risk-test-{secrets.token_hex(4)}",
            topics=list(TOPICS),
            session_factory=maker,
            thresholds=TH,
            bootstrap_servers=bootstrap,
            retry_backoff_s=0.01,
            max_attempts=2,
            session_timeout_ms=1500,
            heartbeat_interval_ms=300,
            on_outcome=self.outcomes.append,
        )
        self.stop = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> LiveConsumer:
        self.task = asyncio.create_task(self.consumer.run(self.stop))
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.stop.set()
        assert self.task is not None
        await asyncio.wait_for(self.task, 15)

    async def wait_for(self, ids: list[str], timeout_s: float = 30) -> None:
        """Until every id in `ids` has an outcome."""
        deadline = time.monotonic() + timeout_s
        while not set(ids) <= {o.event_id for o in self.outcomes}:
            assert self.task is not None
            assert not self.task.done(), self.task.exception()
            assert time.monotonic() < deadline, (len(self.outcomes), len(ids))
            await asyncio.sleep(0.02)

    def status(self, event_id: str) -> list[str]:
        return [o.status for o in self.outcomes if o.event_id == event_id]


async def publish_in_order(
    bootstrap: str, events: list[Event], live: LiveConsumer
) -> list[Envelope]:
    """Publish `events` in order as the services would: the consumer has applied what came
    before whenever the topic changes (a dunning event follows the invoice events it saw)."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    envelopes: list[Envelope] = []
    pending: list[str] = []
    try:
        last_topic = None
        for event in events:
            if last_topic is not None and last_topic != event.TOPIC:
                await live.wait_for(pending)
            env = await send(producer, event)
            envelopes.append(env)
            pending.append(env.id)
            last_topic = event.TOPIC
        await live.wait_for(pending)
    finally:
        await producer.stop()
    return envelopes
