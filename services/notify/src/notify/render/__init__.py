"""Message rendering for the notify service: Jinja2 templates, Babel formats, invoice PDFs.

Pure: no database, no network. `Renderer.render(ctx)` turns a `MessageContext` into a
subject, text and HTML (or an SMS); `invoice_pdf` draws the invoice attachment.
"""

from notify.render.context import (
    CustomerView,
    InvoiceView,
    LineView,
    MessageContext,
)
from notify.render.formatting import format_date, format_money
from notify.render.pdf import invoice_pdf
from notify.render.renderer import (
    PACKAGED_DIR,
    Attachment,
    Rendered,
    Renderer,
    TemplateError,
    TemplateInfo,
)
from notify.render.samples import sample_context

__all__ = [
    "PACKAGED_DIR",
    "Attachment",
    "CustomerView",
    "InvoiceView",
    "LineView",
    "MessageContext",
    "Rendered",
    "Renderer",
    "TemplateError",
    "TemplateInfo",
    "format_date",
    "format_money",
    "invoice_pdf",
    "sample_context",
]
