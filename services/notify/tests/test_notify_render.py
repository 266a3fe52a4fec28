"""The notify rendering library: templates per kind, tone, channel and locale; money; overrides."""

from __future__ import annotations

import datetime as dt
import importlib.resources
import os
import shutil
import subprocess
from decimal import Decimal
from pathlib import Path

import notify.render.renderer as renderer_module
import pytest
from babel.numbers import format_currency
from notify.render import (
    CustomerView,
    InvoiceView,
    LineView,
    MessageContext,
    Renderer,
    TemplateError,
    format_date,
    format_money,
    sample_context,
)
from notify.render.context import CHANNELS, KINDS, TONES, Channel, Kind, Tone

LOCALES = ("en-US", "de-DE", "fr-FR")
TODAY = dt.date(2026, 3, 1)

# (kind, tone) for every message there is: the reminder once per tone.
MESSAGES: list[tuple[Kind, Tone | None]] = [
    *((k, None) for k in KINDS if k != "reminder"),
    *(("reminder", t) for t in TONES),
]


@pytest.fixture(scope="module")
def renderer() -> Renderer:
    return Renderer()


def _customer(**kw: object) -> CustomerView:
    data: dict[str, object] = {
        "id": "cus_1",
        "name": "Acme AG",
        "locale": "en-US",
        "currency": "EUR",
        "customer_gl_code": "4400-ACME",
    }
    data.update(kw)
    return CustomerView.model_validate(data)


def _invoice(**kw: object) -> InvoiceView:
    data: dict[str, object] = {
        "id": "inv_1",
        "number": "INV-7",
        "issue_date": dt.date(2026, 3, 1),
        "due_date": dt.date(2026, 3, 31),
        "currency": "EUR",
        "total": 123456,
        "balance": 123456,
        "po_number": "PO-991",
        "lines": [
            LineView(
                description="Widgets", quantity=2, unit_price=61728, amount=123456, gl_code="6815"
            ),
        ],
    }
    data.update(kw)
    return InvoiceView.model_validate(data)


def _ctx(kind: Kind = "invoice", **kw: object) -> MessageContext:
    data: dict[str, object] = {
        "kind": kind,
        "customer": _customer(),
        "invoices": [_invoice()],
        "currency": "EUR",
        "total_balance": 123456,
    }
    data.update(kw)
    return MessageContext.model_validate(data)


# ------------------------------------------------------------------------------ every message


@pytest.mark.parametrize("channel", CHANNELS)
@pytest.mark.parametrize("locale", LOCALES)
@pytest.mark.parametrize(("kind", "tone"), MESSAGES)
def test_every_kind_and_tone_renders_in_every_locale(
    renderer: Renderer, kind: Kind, tone: Tone | None, locale: str, channel: Channel
) -> None:
    ctx = sample_context(kind, tone, locale=locale, channel=channel, today=TODAY)
    out = renderer.render(ctx)
    assert out.text.strip()
    assert "{{" not in out.text
    assert "{%" not in out.text
    if channel == "sms":
        assert out.subject == ""
        assert out.html is None
        assert "\n" not in out.text
        assert len(out.text) <= 320, out.text
    else:
        assert out.subject.strip()
        assert "\n" not in out.subject
        assert out.html is not None
        assert out.html.startswith("<!DOCTYPE html>")
        assert f'lang="{locale.replace("_", "-")}"' in out.html
        assert ctx.company_name in out.html


@pytest.mark.parametrize(
    ("locale", "words"),
    [
        ("en-US", ("Hello", "Invoice")),
        ("de-DE", ("Guten Tag", "Rechnung")),
        ("fr-FR", ("Bonjour", "Facture")),
    ],
)
def test_messages_are_in_the_customers_language(
    renderer: Renderer, locale: str, words: tuple[str, str]
) -> None:
    out = renderer.render(sample_context("reminder", "neutral", locale=locale, today=TODAY))
    for word in words:
        assert word in out.text
        assert out.html is not None
        assert word in out.html


def test_sample_context_works_for_every_kind() -> None:
    for kind in KINDS:
        ctx = sample_context(kind)
        assert ctx.kind == kind
        assert ctx.customer.locale == "en-US"
        assert ctx.currency == "USD"
    assert sample_context("reminder").tone == "neutral"
    assert sample_context("invoice", locale="de-DE").currency == "EUR"
    assert sample_context("invoice", locale="ja-JP").currency == "JPY"
    assert sample_context("alert").extra["customer_url"].startswith("https://")


# ------------------------------------------------------------------------------ money, dates

MONEY = [
    # locale, currency, minor units, exact string (Babel's spaces: \xa0 nbsp, \u202f narrow)
    ("en-US", "EUR", 123456, "€1,234.56"),
    ("de-DE", "EUR", 123456, "1.234,56\xa0€"),
    ("fr-FR", "EUR", 123456, "1\u202f234,56\xa0€"),
    ("en-US", "JPY", 123456, "¥123,456"),
    ("de-DE", "JPY", 123456, "123.456\xa0¥"),
    ("fr-FR", "JPY", 123456, "123\u202f456\xa0JPY"),
    ("en-US", "KWD", 1234567, "KWD1,234.567"),
    ("de-DE", "KWD", 1234567, "1.234,567\xa0KWD"),
    ("fr-FR", "KWD", 1234567, "1\u202f234,567\xa0KWD"),
    ("en-US", "EUR", 5, "€0.05"),
    ("en-US", "EUR", 0, "€0.00"),
    ("en-US", "USD", -550, "-$5.50"),
]


@pytest.mark.parametrize(("locale", "currency", "minor", "expected"), MONEY)
def test_money_uses_the_currency_precision_and_locale(
    locale: str, currency: str, minor: int, expected: str
) -> None:
    assert format_money(minor, currency, locale) == expected
    digits = {"JPY": 0, "KWD": 3}.get(currency, 2)
    amount = Decimal(minor) / (10**digits)
    assert format_money(minor, currency, locale) == format_currency(
        amount, currency, locale=locale.replace("-", "_")
    )


@pytest.mark.parametrize(("locale", "currency", "minor", "expected"), MONEY[:9])
def test_templates_format_money_in_the_customers_locale(
    renderer: Renderer, locale: str, currency: str, minor: int, expected: str
) -> None:
    ctx = _ctx(
        customer=_customer(locale=locale, currency=currency),
        invoices=[_invoice(currency=currency, total=minor, balance=minor, lines=[])],
        currency=currency,
        total_balance=minor,
    )
    out = renderer.render(ctx)
    assert expected in out.text
    assert out.html is not None
    assert expected in out.html
    reminder = renderer.render(ctx.model_copy(update={"kind": "reminder", "tone": "firm"}))
    assert expected in reminder.text


def test_no_float_rounding_on_large_amounts() -> None:
    assert format_money(999_999_999_999_999, "EUR", "en-US") == "€9,999,999,999,999.99"
    assert format_money(1_000_000_000_000_001, "KWD", "en-US") == "KWD1,000,000,000,000.001"


def test_dates_in_the_customers_locale() -> None:
    d = dt.date(2026, 3, 5)
    assert format_date(d, "long", "en-US") == "March 5, 2026"
    assert format_date(d, "long", "de-DE") == "5. März 2026"
    assert format_date(d, "long", "fr-FR") == "5 mars 2026"
    assert format_date(d, "medium", "de-DE") == "05.03.2026"
    # An instant is shown in the customer's time zone: 23:30 UTC is the next day in Berlin.
    instant = dt.datetime(2026, 3, 5, 23, 30, tzinfo=dt.UTC)
    assert format_date(instant, "short", "de-DE", "Europe/Berlin") == "06.03.26, 00:30"


# ------------------------------------------------------------------------------ content


def test_invoice_email_carries_po_gl_due_date_total_and_payment_link(renderer: Renderer) -> None:
    ctx = _ctx(customer=_customer(locale="de-DE"), currency="EUR")
    out = renderer.render(ctx)
    assert out.subject == "Rechnung INV-7 von duewise (Bestellnr. PO-991)"
    for part in (out.text, out.html or ""):
        assert "INV-7" in part
        assert "PO-991" in part
        assert "4400-ACME" in part  # the customer's GL code
        assert "6815" in part  # the line's GL code
        assert "31. März 2026" in part
        assert "1.234,56\xa0€" in part
        assert "PDF" in part
    assert "https://pay.example.com/cus_1?invoice=INV-7" in out.text
    assert "https://pay.example.com/cus_1?invoice=INV-7" in (out.html or "")


def test_reminder_lists_every_invoice_totals_and_reply_links(renderer: Renderer) -> None:
    ctx = sample_context("reminder", "firm", today=TODAY)
    ctx = ctx.model_copy(
        update={
            "invoices": [
                _invoice(number="INV-1", days_overdue=12, balance=10000, fee_amount=1500),
                _invoice(number="INV-2", days_overdue=-5, balance=20000),
                _invoice(number="INV-3", days_overdue=1, balance=30000),
            ],
            "currency": "EUR",
            "total_balance": 60000,
            "total_fees": 1500,
        }
    )
    out = renderer.render(ctx)
    assert out.html is not None
    for part in (out.text, out.html):
        for number in ("INV-1", "INV-2", "INV-3"):
            assert number in part
        assert "12 days overdue" in part
        assert "due in 5 days" in part
        assert "1 day overdue" in part
        assert "€100.00" in part
        assert "€15.00" in part
        assert "€600.00" in part  # open balance
        assert "€615.00" in part  # with fees
        for url in ctx.reply_urls.values():
            assert url in part
        assert ctx.unsubscribe_url is not None
        assert ctx.unsubscribe_url in part
    assert "I've already paid" in out.text
    assert "I didn't receive the invoice" in out.text
    assert "I dispute this invoice" in out.text
    assert "I need more time" in out.text
    assert "https://pay.example.com/cus_0192f3a4b5c6d7e8f9a0b1c2d3e4f5a6?invoice=" in out.text


def test_reply_links_only_for_the_reasons_given(renderer: Renderer) -> None:
    ctx = sample_context("reminder", "neutral", today=TODAY).model_copy(
        update={"reply_urls": {"dispute": "https://r.example/d"}, "unsubscribe_url": None}
    )
    out = renderer.render(ctx)
    assert "https://r.example/d" in out.text
    assert "already paid" not in out.text
    assert "Unsubscribe" not in (out.html or "")


def test_tones_read_differently(renderer: Renderer) -> None:
    for locale in LOCALES:
        texts = {
            tone: renderer.render(sample_context("reminder", tone, locale=locale, today=TODAY))
            for tone in TONES
        }
        assert len({r.subject for r in texts.values()}) == 4
        intros = {r.text.split("\n\n")[1] for r in texts.values()}
        assert len(intros) == 4
    en = {t: renderer.render(sample_context("reminder", t, today=TODAY)) for t in TONES}
    assert "Friendly reminder" in en["friendly"].subject
    assert en["final"].subject.startswith("FINAL NOTICE")
    assert "credit hold" in en["final"].text
    assert 'class="card final"' in (en["final"].html or "")


def test_thank_you_early_and_on_time(renderer: Renderer) -> None:
    ctx = sample_context("thank_you", today=TODAY)
    early = renderer.render(ctx)
    on_time = renderer.render(ctx.model_copy(update={"extra": {"early": False}}))
    assert "ahead of its due date" in early.text
    assert "on time" in on_time.text
    assert "ahead" not in on_time.text
    no_extra = renderer.render(ctx.model_copy(update={"extra": {}}))
    assert "on time" in no_extra.text


def test_good_standing_credit_hold_alert_and_manual(renderer: Renderer) -> None:
    good = renderer.render(sample_context("good_standing", locale="de-DE"))
    assert "6 Rechnungen in Folge pünktlich" in good.text
    hold = renderer.render(sample_context("credit_hold", locale="fr-FR", today=TODAY))
    assert "suspendu" in hold.subject
    assert "factures en retard de plus de 60 jours" in hold.text
    alert_ctx = sample_context("alert")
    alert = renderer.render(alert_ctx)
    assert alert.subject == "[duewise] Promise to pay broken: Northwind Traders Inc."
    assert alert_ctx.extra["detail"] in alert.text
    assert alert_ctx.extra["customer_url"] in (alert.html or "")
    manual = renderer.render(
        _ctx("manual", extra={"subject": "About INV-7", "body": "Hi,\n\nline one\nline two"})
    )
    assert manual.subject == "About INV-7"
    assert manual.text.startswith("Hi,\n\nline one\nline two\n")
    assert "<p>Hi,</p>" in (manual.html or "")
    assert "<p>line one<br>\nline two</p>" in (manual.html or "")


# ------------------------------------------------------------------------------ escaping

EVIL = '<script>alert("x")</script> & Sons'


def test_html_escapes_customer_text_and_text_does_not(renderer: Renderer) -> None:
    ctx = _ctx(
        customer=_customer(name=EVIL),
        invoices=[
            _invoice(
                po_number="<b>PO</b>",
                lines=[
                    LineView(
                        description="<img src=x onerror=alert(1)>",
                        quantity=1,
                        unit_price=1,
                        amount=1,
                        gl_code="<i>",
                    )
                ],
            )
        ],
    )
    out = renderer.render(ctx)
    assert out.html is not None
    assert "<script>" not in out.html
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt; &amp; Sons" in out.html
    assert "<img" not in out.html
    assert "&lt;img src=x" in out.html
    assert "<b>PO</b>" not in out.html
    assert "<i>" not in out.html
    assert EVIL in out.text  # plain text is not escaped
    assert "<b>PO</b>" in out.subject


def test_manual_body_and_alert_detail_are_escaped_in_html(renderer: Renderer) -> None:
    out = renderer.render(_ctx("manual", extra={"subject": "s", "body": EVIL}))
    assert "<script>" not in (out.html or "")
    assert "&lt;script&gt;" in (out.html or "")
    alert = renderer.render(
        _ctx("alert", extra={"title": EVIL, "detail": EVIL, "customer_url": "https://x/?a=1&b=2"})
    )
    assert "<script>" not in (alert.html or "")
    assert 'href="https://x/?a=1&amp;b=2"' in (alert.html or "")


def test_subject_is_one_line_whatever_the_data(renderer: Renderer) -> None:
    out = renderer.render(_ctx(invoices=[_invoice(number="INV-7\r\nBcc: evil@example.com")]))
    assert "\r" not in out.subject
    assert "\n" not in out.subject
    assert out.subject.startswith("Invoice INV-7 Bcc: evil@example.com")


# ------------------------------------------------------------------------------ lookup


@pytest.mark.parametrize(
    ("locale", "greeting", "money"),
    [
        ("de-CH", "Guten Tag", "EUR\xa01\u2019234.56"),  # German words, Swiss number format
        ("de-AT", "Guten Tag", "€\xa01.234,56"),
        ("de", "Guten Tag", "1.234,56\xa0€"),
        ("fr-CA", "Bonjour", "1\xa0234,56\xa0€"),
        ("fr-BE", "Bonjour", "1\u202f234,56\xa0€"),
        ("pt-BR", "Hello", "€\xa01.234,56"),  # no Portuguese templates: English words
        ("en-GB", "Hello", "€1,234.56"),
        ("xx-nonsense", "Hello", "€1,234.56"),  # unknown locale: English, en-US formats
    ],
)
def test_locale_falls_back_to_language_then_english(
    renderer: Renderer, locale: str, greeting: str, money: str
) -> None:
    out = renderer.render(_ctx(customer=_customer(locale=locale)))
    assert out.text.startswith(greeting)
    assert money in out.text


def test_override_folder_replaces_a_single_file(tmp_path: Path) -> None:
    (tmp_path / "de").mkdir()
    (tmp_path / "de" / "reminder_friendly.subject.j2").write_text(
        "Hallo {{ customer.name }}: {{ total_balance|money(currency) }}", encoding="utf-8"
    )
    renderer = Renderer(override_dir=tmp_path)
    ctx = sample_context("reminder", "friendly", locale="de-DE", today=TODAY)
    out = renderer.render(ctx)
    assert out.subject == "Hallo Nordwind Handel GmbH: 1.554,56\xa0€"
    assert "Freundliche Erinnerung" not in out.subject
    assert "nur eine kurze, freundliche Erinnerung" in out.text  # other parts: packaged
    # Other locales and tones are untouched.
    assert renderer.render(sample_context("reminder", "friendly")).subject.startswith("Friendly")
    assert renderer.render(sample_context("reminder", "firm", locale="de-DE")).subject.startswith(
        "Mahnung"
    )
    listed = {(t.kind, t.tone, t.channel, t.locale): t for t in renderer.templates()}
    assert listed[("reminder", "friendly", "email", "de")].source == "override"
    assert listed[("reminder", "friendly", "email", "en")].source == "packaged"


def test_override_for_a_regional_locale_falls_back_per_file_within_the_language(
    tmp_path: Path,
) -> None:
    (tmp_path / "de-CH").mkdir()
    (tmp_path / "de-CH" / "invoice.txt.j2").write_text(
        "Grüezi {{ name }}, {{ invoice.total|money(invoice.currency) }}", encoding="utf-8"
    )
    renderer = Renderer(override_dir=tmp_path)
    out = renderer.render(_ctx(customer=_customer(locale="de-CH")))
    assert out.text == "Grüezi Acme AG, EUR\xa01\u2019234.56\n"
    assert out.subject.startswith("Rechnung INV-7")  # the German subject, not the English
    assert out.html is not None
    assert "anbei erhalten Sie" in out.html
    # A German customer outside Switzerland does not see the Swiss text.
    assert renderer.render(_ctx(customer=_customer(locale="de-DE"))).text.startswith("Guten Tag")


def test_none_for_lists_and_dicts_means_empty(renderer: Renderer) -> None:
    ctx = _ctx("good_standing", reply_urls=None, invoices=None, extra={"streak": 3})
    assert ctx.invoices == []
    assert ctx.reply_urls == {}
    assert "3 invoices" in renderer.render(ctx).text
    assert _invoice(lines=None).lines == []


def test_override_folder_can_replace_partials_and_the_layout(tmp_path: Path) -> None:
    (tmp_path / "en").mkdir()
    (tmp_path / "en" / "_footer.txt.j2").write_text("-- custom footer", encoding="utf-8")
    (tmp_path / "_layout.html.j2").write_text(
        "<!DOCTYPE html><main>{% block content %}{% endblock %}</main>", encoding="utf-8"
    )
    out = Renderer(override_dir=tmp_path).render(_ctx())
    assert out.text.rstrip().endswith("-- custom footer")
    assert out.html is not None
    assert out.html.startswith("<!DOCTYPE html><main>")
    assert "INV-7" in out.html


def test_override_files_take_effect_without_a_restart(tmp_path: Path) -> None:
    renderer = Renderer(override_dir=tmp_path)
    assert renderer.render(_ctx()).subject.startswith("Invoice INV-7")  # packaged, compiled
    (tmp_path / "en").mkdir()
    override = tmp_path / "en" / "invoice.subject.j2"
    override.write_text("First {{ invoice.number }}", encoding="utf-8")
    assert renderer.render(_ctx()).subject == "First INV-7"
    override.write_text("Second {{ invoice.number }}", encoding="utf-8")
    stat = override.stat()
    os.utime(override, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    assert renderer.render(_ctx()).subject == "Second INV-7"
    override.unlink()
    assert renderer.render(_ctx()).subject.startswith("Invoice INV-7")


def test_template_filters_use_each_customers_locale_and_time_zone(tmp_path: Path) -> None:
    (tmp_path / "en").mkdir()
    (tmp_path / "en" / "manual.txt.j2").write_text(
        "{{ extra.at|date('short') }} {{ money(150, currency) }} {{ 150|money('JPY') }}",
        encoding="utf-8",
    )
    renderer = Renderer(override_dir=tmp_path)
    at = dt.datetime(2026, 3, 5, 23, 30, tzinfo=dt.UTC)
    extra = {"subject": "s", "body": "b", "at": at}
    tokyo = _ctx("manual", customer=_customer(timezone="Asia/Tokyo"), extra=extra)
    assert renderer.render(tokyo).text == "3/6/26, 8:30\u202fAM €1.50 ¥150\n"
    new_york = _ctx(
        "manual", customer=_customer(locale="en-GB", timezone="America/New_York"), extra=extra
    )
    assert renderer.render(new_york).text == "05/03/2026, 18:30 €1.50 JP¥150\n"


def test_override_folder_can_add_a_locale(tmp_path: Path) -> None:
    (tmp_path / "es").mkdir()
    for part, body in (("subject", "Factura {{ invoice.number }}"), ("txt", "Hola {{ name }}")):
        (tmp_path / "es" / f"invoice.{part}.j2").write_text(body, encoding="utf-8")
    renderer = Renderer(override_dir=tmp_path)
    out = renderer.render(_ctx(customer=_customer(locale="es-ES")))
    assert out.subject == "Factura INV-7"
    assert out.text == "Hola Acme AG\n"
    assert out.html is None  # no HTML part in Spanish: the message is text only
    # A Spanish reminder has no Spanish templates: English.
    assert renderer.render(sample_context("reminder", locale="es-ES")).text.startswith("Hello")


def test_broken_template_raises_template_error_naming_it(tmp_path: Path) -> None:
    (tmp_path / "en").mkdir()
    (tmp_path / "en" / "reminder_firm.txt.j2").write_text("{% if %}oops", encoding="utf-8")
    (tmp_path / "en" / "invoice.html.j2").write_text("{{ no_such_variable }}", encoding="utf-8")
    renderer = Renderer(override_dir=tmp_path)
    with pytest.raises(TemplateError, match=r"reminder_firm\.txt\.j2") as syntax:
        renderer.render(sample_context("reminder", "firm"))
    assert "syntax error line 1" in str(syntax.value)
    with pytest.raises(TemplateError, match=r"invoice\.html\.j2") as undefined:
        renderer.render(_ctx())
    assert "no_such_variable" in str(undefined.value)
    assert undefined.value.template.endswith("invoice.html.j2")


def test_missing_kind_specific_data_is_a_template_error(renderer: Renderer) -> None:
    with pytest.raises(TemplateError, match=r"alert\.subject\.j2.*title"):
        renderer.render(_ctx("alert", extra={"detail": "d", "customer_url": "u"}))


def test_missing_template_is_a_template_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(renderer_module, "PACKAGED_DIR", tmp_path)
    with pytest.raises(TemplateError, match=r"reminder_final\.sms\.j2.*not found"):
        Renderer().render(sample_context("reminder", "final", channel="sms"))


def test_payment_url_template(renderer: Renderer) -> None:
    ctx = _ctx()
    assert (
        renderer.payment_url(ctx, ctx.invoices[0]) == "https://pay.example.com/cus_1?invoice=INV-7"
    )
    assert renderer.payment_url(ctx) == "https://pay.example.com/cus_1?invoice="
    custom = Renderer(
        payment_link_template="https://billing.example/{{ customer.id }}/{{ invoice.id|urlencode }}"
    )
    assert custom.payment_url(ctx, ctx.invoices[0]) == "https://billing.example/cus_1/inv_1"
    assert "https://billing.example/cus_1/inv_1" in custom.render(ctx).text
    with pytest.raises(TemplateError, match="payment_link_template"):
        Renderer(payment_link_template="{{ customer.id ")
    with pytest.raises(TemplateError, match="payment_link_template"):
        Renderer(payment_link_template="{{ nope }}").payment_url(ctx)


# ------------------------------------------------------------------------------ listing, packaging


def test_templates_lists_every_kind_tone_channel_and_locale(renderer: Renderer) -> None:
    listed = {(t.kind, t.tone, t.channel, t.locale): t for t in renderer.templates()}
    for kind, tone in MESSAGES:
        for channel in CHANNELS:
            for locale in ("en", "de", "fr"):
                info = listed[(kind, tone, channel, locale)]
                assert info.source == "packaged"
                assert info.parts == (("sms",) if channel == "sms" else ("subject", "txt", "html"))
    assert len(listed) == len(MESSAGES) * len(CHANNELS) * 3


def test_templates_are_package_data() -> None:
    root = importlib.resources.files("notify.render") / "templates"
    assert (root / "_layout.html.j2").is_file()
    for locale in ("en", "de", "fr"):
        for kind, tone in MESSAGES:
            name = f"{kind}_{tone}" if tone else kind
            for part in ("subject", "txt", "html", "sms"):
                assert (root / locale / f"{name}.{part}.j2").is_file(), (locale, name, part)
    # The wheel takes every file under src/notify that git does not ignore (hatch's rule).
    git = shutil.which("git")
    if git is None:
        pytest.skip("git not available")
    files = [str(root / "en" / "invoice.txt.j2"), str(root / "_layout.html.j2")]
    ignored = subprocess.run([git, "check-ignore", *files], capture_output=True, check=False)
    assert ignored.returncode == 1, ignored.stdout
