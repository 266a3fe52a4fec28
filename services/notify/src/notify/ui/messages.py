"""The starting texts a collector picks for a manual message, and the choices the customer
page's forms offer (dispute outcomes, contact roles) — all taken from the owning services."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from notify.render.formatting import format_money
from notify.ui.accounts import SignedIn

if TYPE_CHECKING:
    from notify.ui.customer import CustomerPage

#: invoice's DisputeOutcome and ContactRole (the service refuses anything else).
DISPUTE_OUTCOMES = ("customer_right", "customer_wrong", "settled")
CONTACT_ROLES = ("billing", "primary", "escalation", "other")


@dataclass(frozen=True)
class MessageTemplate:
    title: str
    subject: str
    body: str


#: {name}, {open}, {overdue}, {invoices} and {collector} are filled from the customer page.
MESSAGE_TEMPLATES: dict[str, MessageTemplate] = {
    "statement": MessageTemplate(
        "Statement of open invoices",
        "Your open invoices with us",
        "Hello,\n\nFor your records, {name} has {open} open with us, of which {overdue} "
        "is past due ({invoices}).\n\nIf anything does not match your books, reply to this "
        "message and we will sort it out.\n\nKind regards,\n{collector}",
    ),
    "payment_plan": MessageTemplate(
        "Offer a payment plan",
        "A payment plan for your overdue balance",
        "Hello,\n\nWe understand that paying {overdue} at once may be difficult. We can "
        "split it into instalments over the coming weeks.\n\nReply with what would work for "
        "you and we will confirm it in writing.\n\nKind regards,\n{collector}",
    ),
    "remittance": MessageTemplate(
        "Ask for remittance details",
        "Could you send us the remittance advice?",
        "Hello,\n\nWe may have received a payment from {name} that we cannot match to "
        "{invoices}. Could you send us the remittance advice (date, amount and reference)?"
        "\n\nThank you,\n{collector}",
    ),
    "blank": MessageTemplate("Blank message", "", ""),
}


def message_defaults(page: CustomerPage, user: SignedIn, template: str | None) -> dict[str, Any]:
    """The message form's starting values: the chosen template filled for this customer."""
    chosen = MESSAGE_TEMPLATES.get(template or "", MESSAGE_TEMPLATES["statement"])
    currency = page.customer["currency"]
    balance = page.balance
    fill = {
        "name": page.customer["name"],
        "invoices": ", ".join(i["number"] for i in page.open_invoices) or "no open invoices",
        "collector": user.display_name,
    }
    for figure in ("open", "overdue"):
        # When the invoice service did not answer, a bracket the collector has to fill in,
        # never "0.00" (which a customer would read as "you owe nothing").
        fill[figure] = (
            format_money(int(balance[figure]), currency, "en-US")
            if balance is not None
            else f"[{figure} amount]"
        )
    if page.problems.get("invoices"):
        fill["invoices"] = "[invoice numbers]"
    return {
        "template": next(k for k, v in MESSAGE_TEMPLATES.items() if v is chosen),
        "channel": "email",
        "subject": chosen.subject.format(**fill),
        "body": chosen.body.format(**fill),
        "invoice_ids": [i["id"] for i in page.open_invoices],
        "contact_ids": [page.billing_contact_id] if page.billing_contact_id else [],
    }


__all__ = [
    "CONTACT_ROLES",
    "DISPUTE_OUTCOMES",
    "MESSAGE_TEMPLATES",
    "MessageTemplate",
    "message_defaults",
]
