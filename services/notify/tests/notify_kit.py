"""Test data and helpers for the notify service: the facts it hears, and a sender to run."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import io
import itertools
from email.message import EmailMessage
from typing import Any

import httpx
from duewise_dev.catcher import Catcher
from duewise_events.catalogue import (
    BY_TYPE,
    AllocationSnapshot,
    ContactSnapshot,
    CustomerCreated,
    Event,
    InvoiceIssued,
    InvoiceLineSnapshot,
    InvoicePreferencesSnapshot,
    PaymentReceived,
    ReminderDue,
    ReminderInvoice,
)
from duewise_events.envelope import Envelope
from notify.channels.email import SmtpSender
from notify.channels.sms import TwilioSms
from notify.channels.webhooks import WebhookSender
from notify.config import Settings
from notify.handlers import handle
from notify.lastlook import InvoiceApiLastLook, LastLook
from notify.models import OUTBOX_TABLE, Message, utcnow
from notify.render import Renderer
from notify.sender import Sender
from pypdf import PdfReader
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlmodel import col, select

_seq = itertools.count(1)


def customer(
    cid: str | None = None,
    *,
    email_: str = "ap@acme.example",
    locale: str = "en-US",
    currency: str = "EUR",
    tz: str = "Europe/Berlin",
    country: str = "DE",
    owner: str | None = "alice@collectors.example",
    extra_contacts: list[ContactSnapshot] | None = None,
    cc: list[str] | None = None,
    phone: str | None = None,
) -> CustomerCreated:
    n = next(_seq)
    cid = cid or f"cus_{n}"
    return CustomerCreated(
        customer_id=cid,
        name=f"Acme {n} GmbH",
        currency=currency,
        timezone=tz,
        country=country,
        locale=locale,
        payment_terms_days=30,
        owner=owner,
        contacts=[
            ContactSnapshot(
                id=f"con_{cid}_billing",
                name="Petra Payable",
                email=email_,
                phone=phone,
                role="billing",
            ),
            *(extra_contacts or []),
        ],
        invoice_preferences=InvoicePreferencesSnapshot(
            po_required=True, customer_gl_code="GL-7788", cc=cc or []
        ),
    )


def invoice(
    customer_id: str,
    *,
    iid: str | None = None,
    number: str | None = None,
    due: dt.date = dt.date(2026, 12, 20),
    total: int = 1_234_56,
    currency: str = "EUR",
    imported: bool = False,
) -> InvoiceIssued:
    n = next(_seq)
    return InvoiceIssued(
        customer_id=customer_id,
        invoice_id=iid or f"inv_{n}",
        number=number or f"INV-{n:05d}",
        issue_date=due - dt.timedelta(days=30),
        due_date=due,
        currency=currency,
        total=total,
        balance=total,
        po_number=f"PO-{n:04d}",
        gl_code="4000",
        lines=[
            InvoiceLineSnapshot(
                description="Consulting",
                quantity=1,
                unit_price=total,
                amount=total,
                gl_code="4000-10",
            )
        ],
        imported=imported,
    )


def payment(
    inv: InvoiceIssued, *, received_at: dt.date | None = None, amount: int | None = None
) -> PaymentReceived:
    amount = inv.total if amount is None else amount
    left = inv.total - amount
    return PaymentReceived(
        customer_id=inv.customer_id,
        payment_id=f"pay_{next(_seq)}",
        amount=amount,
        currency=inv.currency,
        method="wire",
        received_at=received_at or inv.due_date,
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


def reminder(
    invoices: list[InvoiceIssued],
    *,
    notice_id: str | None = None,
    tone: str = "firm",
    channel: str = "email",
    local_date: dt.date = dt.date(2026, 12, 27),
) -> ReminderDue:
    first = invoices[0]
    items = [
        ReminderInvoice(
            invoice_id=i.invoice_id,
            number=i.number,
            due_date=i.due_date,
            balance=i.balance,
            currency=i.currency,
            days_overdue=(local_date - i.due_date).days,
        )
        for i in invoices
    ]
    return ReminderDue(
        customer_id=first.customer_id,
        notice_id=notice_id or f"not_{next(_seq)}",
        step_key="7-days-late",
        step_index=3,
        channel=channel,  # type: ignore[arg-type]
        template="reminder",
        tone=tone,  # type: ignore[arg-type]
        local_date=local_date,
        send_at=dt.datetime.combine(local_date, dt.time(9), dt.UTC),
        invoices=items,
        currency=first.currency,
        total_balance=sum(i.balance for i in items),
        policy_id="pol_default",
        policy_version=1,
    )


def wrap(event: Event) -> Envelope:
    source = "duewise/dunning" if event.TOPIC == "dunning.events" else "duewise/invoice"
    return Envelope.wrap(event, source=source)


async def apply_events(maker: async_sessionmaker[AsyncSession], *events: Event | Envelope) -> None:
    """Apply events as the consumer does (one transaction each), without the broker."""
    for item in events:
        envelope = item if isinstance(item, Envelope) else wrap(item)
        async with maker() as session, session.begin():
            await handle(session, envelope.event(), envelope)


async def events_from_invoice_outbox(invoice_app: Any, after_id: int = 0) -> list[Envelope]:
    """The events the real invoice service staged (its outbox rows), oldest first."""
    async with invoice_app.state.engine.connect() as conn:
        rows = (
            await conn.execute(
                text(
                    "SELECT id, event_id, type, key, time, payload FROM outbox "
                    "WHERE id > :after ORDER BY id"
                ),
                {"after": after_id},
            )
        ).all()
    return [
        Envelope(
            id=r.event_id,
            source="duewise/invoice",
            type=r.type,
            time=r.time,
            key=r.key,
            data=r.payload,
        )
        for r in rows
        if r.type in BY_TYPE
    ]


def make_sender(
    settings: Settings,
    last_look: LastLook,
    maker: async_sessionmaker[AsyncSession],
    *,
    renderer: Renderer | None = None,
    now: dt.datetime | None = None,
    **overrides: Any,
) -> Sender:
    if overrides:
        settings = settings.model_copy(update=overrides)
    return Sender(
        maker,
        settings=settings,
        email=SmtpSender.from_url(settings.smtp_url, from_addr=settings.mail_from),
        sms=TwilioSms(
            base_url=settings.sms_url,
            account_sid=settings.sms_account_sid,
            auth_token=settings.sms_auth_token.get_secret_value(),
            from_number=settings.sms_from,
        ),
        webhooks=WebhookSender(allow_private=settings.webhook_allow_private),
        renderer=renderer or Renderer(settings.template_dir, settings.payment_link_template),
        last_look=last_look,
        now=(lambda: now) if now is not None else utcnow,
    )


def last_look_for(invoice_client: httpx.AsyncClient) -> InvoiceApiLastLook:
    return InvoiceApiLastLook(invoice_client)


async def drain(sender: Sender, rounds: int = 10) -> None:
    """Run sender passes until nothing due is left (messages it records, like alerts, too)."""
    for _ in range(rounds):
        if not await sender.pass_once():
            return
    raise AssertionError("the sender still had work after many passes")


async def messages(maker: async_sessionmaker[AsyncSession], **where: Any) -> list[Message]:
    async with maker() as session:
        stmt = select(Message).order_by(col(Message.created_at), col(Message.id))
        for name, value in where.items():
            stmt = stmt.where(getattr(Message, name) == value)
        return list((await session.scalars(stmt)).all())


async def outbox_events(
    maker: async_sessionmaker[AsyncSession], type_: str
) -> list[dict[str, Any]]:
    async with maker() as session:
        rows = await session.execute(
            select(OUTBOX_TABLE.c.payload)
            .where(OUTBOX_TABLE.c.type == type_)
            .order_by(OUTBOX_TABLE.c.id)
        )
        return [r[0] for r in rows]


def mails_to(catcher: Catcher, address: str) -> list[EmailMessage]:
    return [
        m.message for m in catcher.store.mails if address.lower() in (r.lower() for r in m.rcpt_tos)
    ]


def mails_for(catcher: Catcher, msgs: list[Message]) -> list[EmailMessage]:
    """The caught mails of these messages (by their stable Message-ID)."""
    ids = {m.header_message_id for m in msgs}
    return [m.message for m in catcher.store.mails if m.message["Message-ID"] in ids]


def text_of(mail: EmailMessage) -> str:
    part = mail.get_body(preferencelist=("plain",))
    assert part is not None
    content = part.get_content()
    assert isinstance(content, str)
    return content


def html_of(mail: EmailMessage) -> str:
    part = mail.get_body(preferencelist=("html",))
    assert part is not None
    content = part.get_content()
    assert isinstance(content, str)
    return content


def pdf_text(mail: EmailMessage) -> str:
    pdfs = [a for a in mail.iter_attachments() if a.get_content_type() == "application/pdf"]
    assert len(pdfs) == 1, [a.get_content_type() for a in mail.iter_attachments()]
    data = pdfs[0].get_content()
    assert isinstance(data, bytes)
    return "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(data)).pages)


def parse(raw: bytes) -> EmailMessage:
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    return msg
