"""The invoice PDF: one page, the customer's locale, PO and GL codes, any text, and fast."""

from __future__ import annotations

import datetime as dt
import io
import time

import pytest
from notify.render import CustomerView, InvoiceView, LineView, invoice_pdf, sample_context
from pypdf import PdfReader


def _text(pdf: bytes) -> str:
    reader = PdfReader(io.BytesIO(pdf))
    text = "\n".join(page.extract_text() for page in reader.pages)
    # Babel's no-break spaces may come back as either kind of space.
    return text.replace("\xa0", " ").replace("\u202f", " ")


def _pages(pdf: bytes) -> int:
    return len(PdfReader(io.BytesIO(pdf)).pages)


def _customer(locale: str = "en-US", currency: str = "EUR", **kw: object) -> CustomerView:
    data: dict[str, object] = {
        "id": "cus_42",
        "name": "Acme Industries",
        "locale": locale,
        "currency": currency,
        "customer_gl_code": "4400-ACME",
    }
    data.update(kw)
    return CustomerView.model_validate(data)


def _invoice(currency: str = "EUR", total: int = 123456, **kw: object) -> InvoiceView:
    data: dict[str, object] = {
        "id": "inv_42",
        "number": "INV-2026-0042",
        "issue_date": dt.date(2026, 3, 5),
        "due_date": dt.date(2026, 4, 4),
        "currency": currency,
        "total": total,
        "balance": total,
        "po_number": "PO-77881",
        "lines": [
            LineView(
                description="Consulting",
                quantity=1,
                unit_price=total,
                amount=total,
                gl_code="6450-CONS",
            ),
        ],
    }
    data.update(kw)
    return InvoiceView.model_validate(data)


@pytest.mark.parametrize(
    ("locale", "currency", "total", "formatted", "words"),
    [
        ("en-US", "EUR", 123456, "€1,234.56", ("INVOICE", "Due date", "March 5, 2026")),
        ("de-DE", "EUR", 123456, "1.234,56 €", ("RECHNUNG", "Fällig am", "5. März 2026")),
        ("fr-FR", "EUR", 123456, "1 234,56 €", ("FACTURE", "Date d\u2019échéance", "5 mars 2026")),
        ("en-US", "JPY", 123456, "¥123,456", ("INVOICE",)),
        ("de-DE", "JPY", 123456, "123.456 ¥", ("RECHNUNG",)),
        ("en-US", "KWD", 1234567, "KWD1,234.567", ("INVOICE",)),
        ("fr-FR", "KWD", 1234567, "1 234,567 KWD", ("FACTURE",)),
    ],
)
def test_pdf_has_number_po_gl_and_total_in_the_customers_locale(
    locale: str, currency: str, total: int, formatted: str, words: tuple[str, ...]
) -> None:
    pdf = invoice_pdf(_invoice(currency, total), _customer(locale, currency), "Globex Ltd")
    assert pdf.startswith(b"%PDF-")
    assert _pages(pdf) == 1
    text = _text(pdf)
    assert "Globex Ltd" in text
    assert "Acme Industries" in text
    assert "INV-2026-0042" in text
    assert "PO-77881" in text
    assert "4400-ACME" in text  # the customer's GL code
    assert "6450-CONS" in text  # the line's GL code
    assert formatted in text
    for word in words:
        assert word in text


def test_pdf_shows_what_is_left_to_pay_after_a_part_payment() -> None:
    text = _text(invoice_pdf(_invoice(balance=100000), _customer("de-DE")))
    assert "Gesamtbetrag 1.234,56 €" in text
    assert "Bezahlt 234,56 €" in text
    assert "Offener Betrag 1.000,00 €" in text


def test_pdf_replaces_characters_the_core_fonts_cannot_draw() -> None:
    customer = _customer("pl-PL", name="Łódź Sp. z o.o. 🚀 — “Zażółć”")
    invoice = _invoice(
        lines=[LineView(description="Usługa 東京", quantity=1, unit_price=5, amount=5)],
        total=5,
    )
    text = _text(invoice_pdf(invoice, customer))
    assert "Lódz Sp. z o.o. ? — “Zazólc”" in text  # ó is windows-1252; others lose accents
    assert "Usluga ??" in text  # no Latin form: ?
    assert "INV-2026-0042" in text


def test_pdf_cuts_long_text_to_its_column_and_continues_long_invoices_on_another_page() -> None:
    lines = [
        LineView(
            description=f"Item {n} " + "very long description " * 8,
            quantity=n,
            unit_price=100,
            amount=100 * n,
            gl_code=f"GL-{n}",
        )
        for n in range(1, 61)
    ]
    total = sum(line.amount for line in lines)
    pdf = invoice_pdf(_invoice(lines=lines, total=total), _customer())
    assert _pages(pdf) >= 2
    text = _text(pdf)
    assert "…" in text
    assert "GL-60" in text
    assert "$" not in text
    assert "€1,830.00" in text


def test_pdf_is_deterministic() -> None:
    ctx = sample_context("invoice", locale="fr-FR", today=dt.date(2026, 3, 1))
    assert invoice_pdf(ctx.invoices[0], ctx.customer) == invoice_pdf(ctx.invoices[0], ctx.customer)


def test_pdf_is_fast() -> None:
    """Not a benchmark: a guard against a regression of an order of magnitude (~3-4 ms of CPU each)."""
    ctx = sample_context("invoice", locale="de-DE")
    invoice, customer = ctx.invoices[0], ctx.customer
    invoice_pdf(invoice, customer)
    runs = 50
    start = time.process_time()
    for _ in range(runs):
        invoice_pdf(invoice, customer)
    per_pdf_ms = (time.process_time() - start) / runs * 1000
    assert per_pdf_ms < 50, f"{per_pdf_ms:.1f} ms per PDF"


@pytest.mark.parametrize("style", ["", "B"])
@pytest.mark.parametrize("size", [9, 16])
def test_fast_text_width_matches_fpdf(style: str, size: int) -> None:
    from fpdf import FPDF
    from notify.render.pdf import _width, pdf_text

    pdf = FPDF()
    pdf.core_fonts_encoding = "windows-1252"
    pdf.add_page()
    pdf.set_font("Helvetica", style, size)
    for text in (
        "1.234,56\xa0€",
        "Date d\u2019échéance",
        pdf_text("1\u202f234,56\xa0€ \u2013 “x” …"),
    ):
        assert _width(pdf, text) == pytest.approx(pdf.get_string_width(text))
