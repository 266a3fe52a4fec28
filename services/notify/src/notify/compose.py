"""From a recorded message and the projections to what a template sees and who receives it."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from itsdangerous import BadSignature, URLSafeSerializer

from notify.models import CustomerProjection, InvoiceProjection, Message
from notify.render import CustomerView, InvoiceView, LineView, MessageContext
from notify.render.context import REPLY_REASONS

# --- signed links ------------------------------------------------------------------------


class Links:
    """Reply and unsubscribe links: signed, so nobody can answer for another customer."""

    def __init__(self, secret: str, public_url: str) -> None:
        self._reply = URLSafeSerializer(secret, salt="duewise-reply")
        self._unsub = URLSafeSerializer(secret, salt="duewise-unsubscribe")
        self.public_url = public_url.rstrip("/")

    def reply_urls(self, message_id: str, customer_id: str) -> dict[str, str]:
        token = self._reply.dumps({"m": message_id, "c": customer_id})
        return {r: f"{self.public_url}/r/{token}?reason={r}" for r in REPLY_REASONS}

    def reply_token(self, token: str) -> tuple[str, str] | None:
        """(message id, customer id) of a genuine reply token, else None."""
        try:
            data = self._reply.loads(token)
        except BadSignature:
            return None
        return str(data["m"]), str(data["c"])

    def unsubscribe_url(self, contact_id: str, customer_id: str) -> str:
        token = self._unsub.dumps({"k": contact_id, "c": customer_id})
        return f"{self.public_url}/u/{token}"

    def unsubscribe_token(self, token: str) -> tuple[str, str] | None:
        """(contact id, customer id) of a genuine unsubscribe token, else None."""
        try:
            data = self._unsub.loads(token)
        except BadSignature:
            return None
        return str(data["k"]), str(data["c"])


# --- recipients --------------------------------------------------------------------------


@dataclass(frozen=True)
class Recipient:
    contact_id: str | None
    name: str
    address: str  # an email address or an E.164 number
    role: str

    def as_json(self) -> dict[str, Any]:
        # The log keeps addresses (it is the record of who was written to); events do not.
        return {
            "contact_id": self.contact_id,
            "name": self.name,
            "address": self.address,
            "role": self.role,
        }


#: Who receives each kind by default, by contact role, in order of preference.
ROLES: dict[str, tuple[str, ...]] = {
    "invoice": ("billing",),
    "reminder": ("billing",),
    "thank_you": ("billing",),
    "good_standing": ("billing", "primary"),
    "credit_hold": ("billing", "escalation"),
    "manual": ("billing",),
}
#: When no contact has the roles wanted, the primary contact gets it rather than nobody.
FALLBACK_ROLE = "primary"


def contacts_for(
    customer: CustomerProjection,
    message: Message,
    *,
    channel: str,
    opted_out: set[str],
) -> list[dict[str, Any]]:
    """The customer's contacts this message goes to (undeliverable ones left out)."""
    field = "email" if channel == "email" else "phone"
    wanted_ids = set(message.data.get("contact_ids") or [])
    roles = tuple(message.data.get("recipient_roles") or ROLES.get(message.kind, ("billing",)))
    usable = [
        c
        for c in customer.contacts
        if c.get(field) and not c.get("undeliverable") and c["id"] not in opted_out
    ]
    if wanted_ids:
        return [c for c in usable if c["id"] in wanted_ids]
    chosen = [c for c in usable if c.get("role") in roles]
    if not chosen:
        chosen = [c for c in usable if c.get("role") == FALLBACK_ROLE]
    return chosen


# --- the template's view -----------------------------------------------------------------


def local_today(customer: CustomerProjection, now: dt.datetime) -> dt.date:
    try:
        return now.astimezone(ZoneInfo(customer.timezone)).date()
    except (KeyError, ValueError):
        return now.date()


def customer_view(customer: CustomerProjection) -> CustomerView:
    prefs = customer.invoice_preferences or {}
    return CustomerView(
        id=customer.id,
        name=customer.name,
        locale=customer.locale or "en-US",
        timezone=customer.timezone or "UTC",
        currency=customer.currency,
        customer_gl_code=prefs.get("customer_gl_code"),
        po_required=bool(prefs.get("po_required")),
    )


def invoice_view(invoice: InvoiceProjection, today: dt.date) -> InvoiceView:
    return InvoiceView(
        id=invoice.id,
        number=invoice.number,
        issue_date=invoice.issue_date,
        due_date=invoice.due_date,
        currency=invoice.currency,
        total=invoice.total,
        balance=invoice.balance,
        po_number=invoice.po_number,
        gl_code=invoice.gl_code,
        lines=[LineView.model_validate(line) for line in invoice.lines],
        days_overdue=(today - invoice.due_date).days,
    )


def reminder_views(
    message: Message,
    known: dict[str, InvoiceProjection],
    balances: dict[str, int],
    today: dt.date,
) -> list[InvoiceView]:
    """The reminder's invoices that are still owed, at their current balances."""
    views: list[InvoiceView] = []
    for item in message.data.get("invoices", []):
        invoice_id = item["invoice_id"]
        if invoice_id not in balances:
            continue  # paid, voided, written off or disputed since dunning decided
        due = dt.date.fromisoformat(item["due_date"])
        projected = known.get(invoice_id)
        views.append(
            InvoiceView(
                id=invoice_id,
                number=item["number"],
                issue_date=projected.issue_date if projected else due,
                due_date=due,
                currency=item["currency"],
                total=projected.total if projected else balances[invoice_id],
                balance=balances[invoice_id],
                po_number=projected.po_number if projected else None,
                gl_code=projected.gl_code if projected else None,
                days_overdue=(today - due).days,
                fee_amount=int(item.get("fee_amount", 0)),
            )
        )
    return views


def context_for(
    message: Message,
    customer: CustomerProjection,
    invoices: list[InvoiceView],
    *,
    channel: str,
    company_name: str,
    recipient_name: str | None = None,
    reply_urls: dict[str, str] | None = None,
    unsubscribe_url: str | None = None,
    extra: dict[str, Any] | None = None,
) -> MessageContext:
    currency = message.data.get("currency") or (
        invoices[0].currency if invoices else customer.currency
    )
    return MessageContext(
        kind=message.kind,
        tone=message.tone,
        channel=channel,
        customer=customer_view(customer),
        recipient_name=recipient_name,
        invoices=invoices,
        currency=currency,
        total_balance=sum(i.balance for i in invoices),
        total_fees=sum(i.fee_amount for i in invoices),
        reply_urls=reply_urls or {},
        unsubscribe_url=unsubscribe_url,
        company_name=company_name,
        extra=extra or {},
    )
