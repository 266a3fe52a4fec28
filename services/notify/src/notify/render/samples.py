"""Realistic sample data for every message kind, for the template preview endpoint."""

from __future__ import annotations

import datetime as dt
from typing import Any

from babel.numbers import get_territory_currencies

from notify.render.context import (
    Channel,
    CustomerView,
    InvoiceView,
    Kind,
    LineView,
    MessageContext,
    Tone,
)
from notify.render.formatting import babel_locale, currency_precision, format_date

_NAMES = {
    "de": ("Nordwind Handel GmbH", "Erika Mustermann", "Büromaterial A4, 80 g", "Wartung Q3"),
    "fr": ("Comptoir Vent du Nord SARL", "Camille Martin", "Papier A4, 80 g", "Maintenance T3"),
    "en": ("Northwind Traders Inc.", "Alex Morgan", "Copy paper A4, 80 gsm", "Maintenance Q3"),
}


# Kind-specific sample text per language: hold reason, alert title and detail, manual message.
_TEXTS = {
    "de": {
        "reason": "Rechnungen mehr als 60 Tage überfällig",
        "title": "Zahlungszusage gebrochen",
        "detail": "{company} hat zugesagt, {number} bis {date} zu bezahlen; "
        "es ist keine Zahlung eingegangen.",
        "subject": "Ihr Kundenkonto bei uns - {number}",
        "body": "Guten Tag {person},\n\nvielen Dank für das Telefonat heute. Wie besprochen "
        "pausieren wir weitere Erinnerungen bis zum Monatsende.\n\nMit freundlichen Grüßen\n"
        "Jordan Lee",
    },
    "fr": {
        "reason": "factures en retard de plus de 60 jours",
        "title": "Promesse de paiement non tenue",
        "detail": "{company} s\u2019était engagé à régler {number} avant le {date} ; "
        "aucun paiement n\u2019est arrivé.",
        "subject": "Votre compte client - {number}",
        "body": "Bonjour {person},\n\nmerci pour notre échange téléphonique. Comme convenu, "
        "nous suspendons les relances jusqu\u2019à la fin du mois.\n\nCordialement,\n"
        "Jordan Lee",
    },
    "en": {
        "reason": "invoices more than 60 days overdue",
        "title": "Promise to pay broken",
        "detail": "{company} promised to pay {number} by {date}; no payment has arrived.",
        "subject": "Your account with us - {number}",
        "body": "Hello {person},\n\nthank you for the call today. As agreed, we will hold "
        "further reminders until the end of the month.\n\nBest regards,\nJordan Lee",
    },
}


def _currency(locale: str) -> str:
    territory = babel_locale(locale).territory
    currencies = get_territory_currencies(territory) if territory else []
    return str(currencies[0]) if currencies else "EUR"


def sample_context(
    kind: Kind,
    tone: Tone | None = None,
    locale: str = "en-US",
    channel: Channel = "email",
    *,
    today: dt.date | None = None,
) -> MessageContext:
    """A plausible message of this kind for a customer in `locale`, in its local currency."""
    today = today or dt.date.today()
    lang = babel_locale(locale).language
    company, person, item_a, item_b = _NAMES.get(lang, _NAMES["en"])
    texts = _TEXTS.get(lang, _TEXTS["en"])
    currency = _currency(locale)
    unit = 10 ** currency_precision(currency)
    if kind == "reminder" and tone is None:
        tone = "neutral"
    customer = CustomerView(
        id="cus_0192f3a4b5c6d7e8f9a0b1c2d3e4f5a6",
        name=company,
        locale=locale,
        timezone={"de": "Europe/Berlin", "fr": "Europe/Paris"}.get(lang, "America/New_York"),
        currency=currency,
        customer_gl_code="4400-ACME",
        po_required=True,
    )
    lines = [
        LineView(
            description=item_a, quantity=40, unit_price=12 * unit, amount=480 * unit, gl_code="6815"
        ),
        LineView(
            description=item_b,
            quantity=1,
            unit_price=754 * unit + unit * 56 // 100,
            amount=754 * unit + unit * 56 // 100,
            gl_code="6450",
        ),
    ]
    total = sum(line.amount for line in lines)
    overdue = InvoiceView(
        id="inv_0192f3a4b5c6d7e8f9a0b1c2d3e4f5a7",
        number="INV-2026-0412",
        issue_date=today - dt.timedelta(days=42),
        due_date=today - dt.timedelta(days=12),
        currency=currency,
        total=total,
        balance=total,
        po_number="PO-88231",
        gl_code="4400-ACME",
        lines=lines,
        days_overdue=12,
        fee_amount=(15 * unit) if tone in ("firm", "final") else 0,
    )
    upcoming = InvoiceView(
        id="inv_0192f3a4b5c6d7e8f9a0b1c2d3e4f5a8",
        number="INV-2026-0457",
        issue_date=today - dt.timedelta(days=25),
        due_date=today + dt.timedelta(days=5),
        currency=currency,
        total=320 * unit,
        balance=320 * unit,
        po_number="PO-88302",
        days_overdue=-5,
    )
    issued = overdue.model_copy(
        update={
            "issue_date": today,
            "due_date": today + dt.timedelta(days=30),
            "days_overdue": -30,
            "fee_amount": 0,
        }
    )
    invoices: list[InvoiceView]
    extra: dict[str, Any] = {}
    if kind == "invoice":
        invoices = [issued]
    elif kind == "thank_you":
        invoices = [issued.model_copy(update={"balance": 0})]
        extra = {"early": True}
    elif kind == "reminder":
        invoices = [overdue, upcoming] if tone in ("friendly", "neutral") else [overdue]
    elif kind == "credit_hold":
        invoices = [overdue]
        extra = {"overdue_balance": overdue.balance, "reason": texts["reason"]}
    else:
        invoices = []
    fill = {
        "company": company,
        "person": person,
        "number": overdue.number,
        "date": format_date(today - dt.timedelta(days=2), "medium", locale),
    }
    if kind == "good_standing":
        extra = {"streak": 6}
    elif kind == "alert":
        extra = {
            "title": texts["title"],
            "detail": texts["detail"].format(**fill),
            "customer_url": f"https://duewise.example.com/customers/{customer.id}",
        }
    elif kind == "manual":
        extra = {"subject": texts["subject"].format(**fill), "body": texts["body"].format(**fill)}
    base = "https://pay.example.com/r/tok_3f9a2c"
    return MessageContext(
        kind=kind,
        tone=tone if kind == "reminder" else None,
        channel=channel,
        customer=customer,
        recipient_name=person,
        invoices=invoices,
        currency=currency,
        total_balance=sum(i.balance for i in invoices),
        total_fees=sum(i.fee_amount for i in invoices),
        reply_urls={
            reason: f"{base}/{reason}"
            for reason in ("already_paid", "not_received", "dispute", "cash_flow")
        }
        if kind in ("reminder", "credit_hold")
        else {},
        unsubscribe_url=None if kind in ("invoice", "alert") else f"{base}/unsubscribe",
        company_name="duewise",
        extra=extra,
    )
