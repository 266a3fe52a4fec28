"""Pick and render a message's templates: override folder first, then the packaged ones.

Templates live in one folder per locale (`en/`, `de/`, `fr/`, or `de-CH/` for a variant) and
are named `<kind>[_<tone>].<part>.j2` with the parts `subject`, `txt`, `html` (email) and
`sms`. A locale falls back de-CH → de → en; within a locale an override file replaces the
packaged file of the same name. Names starting with `_` are layouts and partials.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from jinja2 import (
    BaseLoader,
    Environment,
    StrictUndefined,
    TemplateNotFound,
    TemplateSyntaxError,
    pass_context,
)
from jinja2.exceptions import TemplateError as JinjaTemplateError
from jinja2.loaders import split_template_path
from jinja2.runtime import Context
from markupsafe import Markup, escape

from notify.render.context import KINDS, REPLY_REASONS, TONES, InvoiceView, MessageContext
from notify.render.formatting import babel_locale, format_date, format_money, locale_chain

PACKAGED_DIR = Path(__file__).parent / "templates"

DEFAULT_PAYMENT_LINK = (
    "https://pay.example.com/{{ customer.id }}?invoice={{ invoice.number if invoice else '' }}"
)

_FILE = re.compile(r"^(?P<name>[a-z][a-z_]*)\.(?P<part>subject|txt|html|sms)\.j2$")


class TemplateError(Exception):
    """A template is missing or failed to render; the message names the template and cause."""

    def __init__(self, template: str, cause: str) -> None:
        super().__init__(f"template {template!r}: {cause}")
        self.template = template
        self.cause = cause


@dataclass(frozen=True)
class Rendered:
    """A rendered message: SMS has an empty subject and no HTML."""

    subject: str
    text: str
    html: str | None


@dataclass(frozen=True)
class Attachment:
    """A file sent with a message, such as the invoice PDF."""

    filename: str
    content_type: str
    data: bytes


@dataclass(frozen=True)
class TemplateInfo:
    """One renderable template set, for a listing endpoint."""

    kind: str
    tone: str | None
    channel: Literal["email", "sms"]
    locale: str
    source: Literal["packaged", "override"]
    parts: tuple[str, ...]


class _FolderChain(BaseLoader):
    """The first of several folders that has the template; stale once an earlier one has it.

    Unlike a ChoiceLoader of FileSystemLoaders, a file added to the override folder later
    replaces a packaged template that was already compiled (with `auto_reload`).
    """

    def __init__(self, folders: list[Path]) -> None:
        self.folders = folders

    def get_source(
        self, environment: Environment, template: str
    ) -> tuple[str, str, Callable[[], bool]]:
        parts = split_template_path(template)  # refuses `..`
        for i, folder in enumerate(self.folders):
            path = folder.joinpath(*parts)
            try:
                mtime = path.stat().st_mtime
                source = path.read_text(encoding="utf-8")
            except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
                continue
            earlier = [f.joinpath(*parts) for f in self.folders[:i]]

            def uptodate(
                path: Path = path, mtime: float = mtime, earlier: list[Path] = earlier
            ) -> bool:
                try:
                    changed = path.stat().st_mtime != mtime
                except OSError:
                    return False
                return not changed and not any(e.is_file() for e in earlier)

            return source, str(path), uptodate
        raise TemplateNotFound(template)


@pass_context
def _money(context: Context, amount_minor: int, currency: str) -> str:
    """`amount|money(currency)`: minor units in the customer's locale."""
    return format_money(amount_minor, currency, context["_locale"])


@pass_context
def _date(context: Context, value: dt.date | dt.datetime, format: str = "long") -> str:
    """`d|date("long")`: a date, or an instant in the customer's time zone, in their locale."""
    return format_date(value, format, context["_locale"], context["_timezone"])


def _autoescape(name: str | None) -> bool:
    return name is not None and name.endswith(".html.j2")


def _paragraphs(text: str) -> Markup:
    """Plain text as escaped HTML paragraphs; single newlines become line breaks."""
    blocks = [b.strip() for b in re.split(r"\n\s*\n", str(text).replace("\r\n", "\n"))]
    return Markup("\n").join(
        Markup("<p>{}</p>").format(Markup("<br>\n").join(escape(line) for line in b.split("\n")))
        for b in blocks
        if b
    )


def _one_line(text: str) -> str:
    """Collapse line breaks and runs of spaces (not the no-break spaces of numbers)."""
    return re.sub(r"[ \t\r\n\f\v\x85\u2028\u2029]+", " ", text).strip()


def _tidy_text(text: str) -> str:
    lines = [line.rstrip() for line in text.strip().splitlines()]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)) + "\n"


@lru_cache(maxsize=4)
def _packaged_files(root: Path) -> frozenset[str]:
    return frozenset(p.relative_to(root).as_posix() for p in root.rglob("*.j2"))


def _parse_name(name: str) -> tuple[str, str | None] | None:
    for kind in KINDS:
        if name == kind:
            return kind, None
        if name.startswith(kind + "_") and name[len(kind) + 1 :] in TONES:
            return kind, name[len(kind) + 1 :]
    return None


class Renderer:
    """Renders a `MessageContext` into subject, text and HTML (or an SMS) in its locale."""

    def __init__(
        self,
        override_dir: Path | None = None,
        payment_link_template: str = DEFAULT_PAYMENT_LINK,
    ) -> None:
        self._override = Path(override_dir) if override_dir is not None else None
        self._envs: dict[str, Environment] = {}  # one per locale folder: compiled once
        link_env = Environment(undefined=StrictUndefined, autoescape=False)
        try:
            self._link = link_env.from_string(payment_link_template)
        except JinjaTemplateError as exc:
            raise TemplateError("payment_link_template", f"{type(exc).__name__}: {exc}") from exc

    # -- public -------------------------------------------------------------------------------

    def render(self, ctx: MessageContext) -> Rendered:
        """Render the message for its kind, tone, channel and the customer's locale."""
        locale_dir, name = self._resolve(ctx)
        env = self._env(locale_dir)
        variables = self._variables(ctx)
        if ctx.channel == "sms":
            text = self._render(env, f"{name}.sms.j2", locale_dir, variables)
            return Rendered(subject="", text=_one_line(text), html=None)
        subject = self._render(env, self._part(locale_dir, name, "subject"), locale_dir, variables)
        text = self._render(env, f"{name}.txt.j2", locale_dir, variables)
        html: str | None = None
        if self._exists(locale_dir, f"{name}.html.j2"):
            html = self._render(env, f"{name}.html.j2", locale_dir, variables)
        return Rendered(subject=_one_line(subject), text=_tidy_text(text), html=html)

    def payment_url(self, ctx: MessageContext, invoice: InvoiceView | None = None) -> str:
        """The payment link for the customer (and an invoice) from the configured template."""
        try:
            return self._link.render(customer=ctx.customer, invoice=invoice, ctx=ctx).strip()
        except JinjaTemplateError as exc:
            raise TemplateError("payment_link_template", f"{type(exc).__name__}: {exc}") from exc

    def templates(self) -> list[TemplateInfo]:
        """Every template set there is, packaged or overridden, sorted by kind, tone, locale."""
        found: dict[tuple[str, str | None, str, str], tuple[set[str], set[str]]] = {}
        for source, root in (("packaged", PACKAGED_DIR), ("override", self._override)):
            if root is None or not root.is_dir():
                continue
            for locale_dir in sorted(p for p in root.iterdir() if p.is_dir()):
                for path in locale_dir.iterdir():
                    match = _FILE.match(path.name)
                    parsed = _parse_name(match["name"]) if match else None
                    if match is None or parsed is None or not path.is_file():
                        continue
                    channel = "sms" if match["part"] == "sms" else "email"
                    key = (parsed[0], parsed[1], channel, locale_dir.name)
                    parts, sources = found.setdefault(key, (set(), set()))
                    parts.add(match["part"])
                    sources.add(source)
        order = {"subject": 0, "txt": 1, "html": 2, "sms": 3}
        return [
            TemplateInfo(
                kind=kind,
                tone=tone,
                channel="sms" if channel == "sms" else "email",
                locale=locale,
                source="override" if "override" in sources else "packaged",
                parts=tuple(sorted(parts, key=order.__getitem__)),
            )
            for (kind, tone, channel, locale), (parts, sources) in sorted(
                found.items(), key=lambda kv: (kv[0][0], kv[0][1] or "", kv[0][2], kv[0][3])
            )
        ]

    # -- lookup -------------------------------------------------------------------------------

    def _is_file(self, root: Path, locale_dir: str, filename: str) -> bool:
        if root == PACKAGED_DIR:  # packaged templates do not change while running: list once
            return f"{locale_dir}/{filename}" in _packaged_files(PACKAGED_DIR)
        return (root / locale_dir / filename).is_file()

    def _roots(self) -> list[Path]:
        return [self._override, PACKAGED_DIR] if self._override is not None else [PACKAGED_DIR]

    def _exists(self, locale_dir: str, filename: str) -> bool:
        """Whether a message part exists in this locale's language (de-CH → de, never en).

        Parts of one message never mix languages; partials and the layout may fall back.
        """
        language = locale_dir.split("-")[0]
        return any(
            self._is_file(root, loc, filename)
            for loc in locale_chain(locale_dir)
            if loc.split("-")[0] == language
            for root in self._roots()
        )

    def _part(self, locale_dir: str, name: str, part: str) -> str:
        filename = f"{name}.{part}.j2"
        if not self._exists(locale_dir, filename):
            raise TemplateError(f"{locale_dir}/{filename}", "not found")
        return filename

    def _resolve(self, ctx: MessageContext) -> tuple[str, str]:
        """The most specific locale folder holding this message's main part, and its name."""
        names = [f"{ctx.kind}_{ctx.tone}"] if ctx.tone else []
        if ctx.kind == "reminder" and not ctx.tone:
            names.append("reminder_neutral")
        names.append(ctx.kind)
        main = "sms" if ctx.channel == "sms" else "txt"
        for loc in locale_chain(ctx.customer.locale):
            for name in names:
                if any(self._is_file(root, loc, f"{name}.{main}.j2") for root in self._roots()):
                    return loc, name
        raise TemplateError(
            f"{names[0]}.{main}.j2",
            f"not found for locale {ctx.customer.locale!r} "
            f"(looked in {', '.join(locale_chain(ctx.customer.locale))})",
        )

    def _env(self, locale_dir: str) -> Environment:
        env = self._envs.get(locale_dir)
        if env is None:
            env = self._envs[locale_dir] = self._make_env(locale_dir)
        return env

    def _make_env(self, locale_dir: str) -> Environment:
        folders = [root / sub for sub in locale_chain(locale_dir) for root in self._roots()]
        folders += self._roots()
        env = Environment(
            loader=_FolderChain(folders),
            undefined=StrictUndefined,
            autoescape=_autoescape,
            # Packaged templates never change while running; override files may be edited.
            auto_reload=self._override is not None,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        env.filters["money"] = env.globals["money"] = _money
        env.filters["date"] = env.globals["date"] = _date
        env.filters["paragraphs"] = _paragraphs
        return env

    # -- rendering ----------------------------------------------------------------------------

    def _variables(self, ctx: MessageContext) -> dict[str, Any]:
        customer = ctx.customer

        def payment_url(invoice: InvoiceView | None = None) -> str:
            return self.payment_url(ctx, invoice)

        loc = babel_locale(customer.locale)
        return {
            **{name: getattr(ctx, name) for name in MessageContext.model_fields},
            "_locale": loc,
            "_timezone": customer.timezone,
            "locale_tag": str(loc),
            "ctx": ctx,
            "invoice": ctx.invoices[0] if ctx.invoices else None,
            "name": ctx.recipient_name or customer.name,
            "reply_links": [(r, ctx.reply_urls[r]) for r in REPLY_REASONS if r in ctx.reply_urls],
            "payment_url": payment_url,
        }

    def _render(
        self, env: Environment, filename: str, locale_dir: str, variables: dict[str, Any]
    ) -> str:
        try:
            return env.get_template(filename).render(variables)
        except TemplateSyntaxError as exc:
            where = exc.filename or exc.name or filename
            raise TemplateError(where, f"syntax error line {exc.lineno}: {exc.message}") from exc
        except TemplateNotFound as exc:
            raise TemplateError(filename, f"{exc.name!r} not found (locale {locale_dir})") from exc
        except TemplateError:
            raise
        except Exception as exc:
            raise TemplateError(f"{locale_dir}/{filename}", f"{type(exc).__name__}: {exc}") from exc
