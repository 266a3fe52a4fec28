"""CSV row → the service's Create models, through a Mapping; every error names row and column.

Rows are numbered as a spreadsheet shows them: the header is row 1, the first data row is 2.
Money in "decimal" format is converted with `decimal.Decimal` and the currency's exponent,
exactly: `1234.50` USD → 123450, `1234.500` → 123450 (the extra digit is zero), `0.005` USD is
rejected (it is not a whole number of cents), and a float never appears.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
from collections.abc import Iterable, Iterator, Sequence
from collections.abc import Mapping as Mapping_
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from duewise_service.problems import validation_problem
from pydantic import BaseModel, TypeAdapter, ValidationError

from invoice.imports.mapping import (
    FIELDS,
    REQUIRED,
    FieldType,
    Kind,
    KindMapping,
    Mapping,
    Scalar,
    template_columns,
)
from invoice.models import CustomerCreate, InvoiceCreate, PaymentCreate, currency_exponent
from invoice.models.common import CurrencyCode

FIRST_DATA_ROW = 2
_NUMBER = re.compile(r"[+-]?\d+(\.\d+)?")
_INTEGER = re.compile(r"[+-]?\d+")
_NANP = frozenset({"US", "CA", "PR"})
_TRUE = frozenset({"y", "yes", "true", "t", "1", "x"})
_FALSE = frozenset({"n", "no", "false", "f", "0"})


class RowError(Exception):
    """Why one row cannot be imported: its number, the source column (if one) and the reason."""

    def __init__(self, row: int, column: str | None, reason: str) -> None:
        super().__init__(f"row {row}, {column or '(row)'}: {reason}")
        self.row = row
        self.column = column
        self.reason = reason


class FileError(ValueError):
    """The file itself cannot be imported (unreadable, or a required column is missing)."""

    def __init__(self, reason: str, column: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.column = column


def decimal_to_minor(text: str, exponent: int, *, thousands: str | None = None) -> int:
    """`"1234.50"` with exponent 2 → 123450, exactly; ValueError for anything not a whole
    number of minor units (`"0.005"` for USD), not a plain decimal number (`1e3`, `NaN`)."""
    s = text.strip().replace("$", "").replace(" ", "")
    if thousands:
        s = s.replace(thousands, "")
    negative = s.startswith("(") and s.endswith(")")  # accountants' negative
    if negative:
        s = "-" + s[1:-1]
    if not _NUMBER.fullmatch(s):
        raise ValueError(f"{text!r} is not a decimal amount (e.g. 1234.50)")
    try:
        value = Decimal(s)
    except InvalidOperation as exc:  # pragma: no cover - the regex admits only valid ones
        raise ValueError(f"{text!r} is not a decimal amount") from exc
    minor = value.scaleb(exponent)
    if minor != minor.to_integral_value():
        raise ValueError(
            f"{text!r} has more decimals than the currency allows ({exponent})"
            if exponent
            else f"{text!r}: the currency has no minor unit, so no decimals are allowed"
        )
    return int(minor)


def integer_minor(text: str) -> int:
    """An amount already in minor units (`"123450"`); ValueError if it is not an integer."""
    s = text.strip()
    if not _INTEGER.fullmatch(s):
        raise ValueError(f"{text!r} is not an integer amount in minor units")
    return int(s)


def parse_date(text: str, formats: Sequence[str]) -> dt.date:
    """The date in the first of `formats` that reads `text`."""
    for fmt in formats:
        try:
            return dt.datetime.strptime(text.strip(), fmt).date()
        except ValueError:
            continue
    raise ValueError(f"{text!r} is not a date ({' or '.join(formats)})")


def normalize_phone(text: str, country: str | None) -> str:
    """A phone as E.164 when it can be told: `(714) 555-1212 x12` in the US → `+17145551212`."""
    s = re.split(r"\s*(?:x|ext\.?|extension)\s*\d+\s*$", text.strip(), flags=re.IGNORECASE)[0]
    compact = re.sub(r"[\s\-().]", "", s)
    if compact.startswith("00"):
        return "+" + compact[2:]
    if compact.startswith("+") or country not in _NANP:
        return compact
    if len(compact) == 10 and compact.isdigit():
        return "+1" + compact
    if len(compact) == 11 and compact.startswith("1") and compact.isdigit():
        return "+" + compact
    return compact


@dataclass
class Row:
    """A row's resolved duewise fields, where each came from, and which came from the file."""

    number: int
    raw: dict[str, str]
    values: dict[str, Any] = field(default_factory=dict)
    columns: dict[str, str | None] = field(default_factory=dict)
    from_file: set[str] = field(default_factory=set)

    def error(self, name: str, reason: str) -> RowError:
        return RowError(self.number, self.columns.get(name), reason)


@dataclass
class ParsedCustomer:
    row: Row
    data: CustomerCreate


@dataclass
class ParsedInvoice:
    row: Row
    data: InvoiceCreate
    balance: int
    balance_as_of: dt.date | None


@dataclass
class ParsedPayment:
    row: Row
    data: PaymentCreate
    invoice_number: str | None


Parsed = ParsedCustomer | ParsedInvoice | ParsedPayment


def read_csv(data: bytes | str, mapping: Mapping) -> tuple[list[str], Iterator[dict[str, str]]]:
    """The header and the rows of a CSV file; FileError when it cannot be read as one."""
    if isinstance(data, bytes):
        try:
            text = data.decode(mapping.encoding)
        except (UnicodeDecodeError, LookupError):
            try:
                text = data.decode("cp1252")  # Windows exports (Sage) that are not UTF-8
            except UnicodeDecodeError as exc:
                raise FileError(f"the file is not text in {mapping.encoding}: {exc}") from exc
    else:
        text = data
    text = text.removeprefix("\ufeff")
    reader = csv.DictReader(io.StringIO(text, newline=""), delimiter=mapping.delimiter)
    try:
        header = [h.strip() for h in (reader.fieldnames or [])]
    except csv.Error as exc:
        raise FileError(f"the file is not CSV: {exc}") from exc
    if not header or not any(header):
        raise FileError("the file is empty: no header row")
    if len(set(header)) != len(header):
        dup = next(h for h in header if header.count(h) > 1)
        raise FileError(f"the header names column {dup!r} twice", dup)
    reader.fieldnames = header

    def rows() -> Iterator[dict[str, str]]:
        try:
            for r in reader:
                yield {k: (v if isinstance(v, str) else "") for k, v in r.items() if k}
        except csv.Error as exc:
            raise FileError(
                f"the file is not valid CSV near line {reader.line_num}: {exc}"
            ) from exc

    return header, rows()


class RowParser:
    """Reads rows of one kind through one mapping into the service's Create models."""

    def __init__(self, mapping: Mapping, kind: Kind) -> None:
        self.mapping = mapping
        self.kind = kind
        self.km: KindMapping = mapping.for_kind(kind)
        self.types = FIELDS[kind]
        self.defaults = mapping.defaults_for(kind)
        self.date_formats = mapping.date_formats_for(kind)
        self.money = mapping.money_for(kind)
        self.lookups = {
            name: {str(k).strip().upper(): v for k, v in table.items()}
            for name, table in self.km.lookups.items()
        }

    # -- the file ---------------------------------------------------------------------------

    def sources(self, name: str) -> list[str]:
        """The candidate sources of a field, in order."""
        spec = self.km.fields.get(name)
        if spec is None:
            return []
        return [spec] if isinstance(spec, str) else list(spec)

    @staticmethod
    def columns_of(source: str) -> list[str]:
        return template_columns(source) or [source]

    def check_header(self, header: Sequence[str]) -> None:
        """FileError naming the column when a required field has no source in `header`."""
        present = set(header)
        needed = list(REQUIRED[self.kind])
        if self.kind == "invoices":
            needed.append("total|balance")
        for name in needed:
            names = name.split("|")
            if any(n in self.km.constants or n in self.defaults for n in names):
                continue
            candidates = [s for n in names for s in self.sources(n)]
            if any(all(c in present for c in self.columns_of(s)) for s in candidates):
                continue
            if not candidates:
                raise FileError(
                    f"mapping {self.mapping.name!r} gives {self.kind} no source for "
                    f"{' or '.join(names)}, and no default"
                )
            missing = next(c for c in self.columns_of(candidates[0]) if c not in present)
            also = [s for s in candidates[1:]]
            hint = f" (or {', '.join(also)})" if also else ""
            raise FileError(
                f"required column {missing!r}{hint} is missing; it gives {' or '.join(names)}",
                missing,
            )

    # -- one row ----------------------------------------------------------------------------

    def resolve(self, number: int, raw: dict[str, str]) -> Row:
        """Every field of the row: constant, else the file's (through lookups), else default."""
        row = Row(number=number, raw=raw)
        for name in self.types:
            if name in self.km.constants:
                row.values[name] = self.km.constants[name]
                row.columns[name] = None
                continue
            value: Scalar | None
            value, column = self._from_file(raw, name)
            row.columns[name] = column
            guessed = False
            if value is not None and name in self.lookups:
                value, guessed = self._lookup(row, name, value)
            if value is not None:
                row.values[name] = value
                if not guessed:
                    row.from_file.add(name)
            elif name in self.defaults:
                row.values[name] = self.defaults[name]
        return row

    def _from_file(self, raw: dict[str, str], name: str) -> tuple[str | None, str | None]:
        first_column: str | None = None
        for source in self.sources(name):
            cols = template_columns(source)
            if cols:
                parts = {c: (raw.get(c) or "").strip() for c in cols}
                first_column = first_column or "+".join(cols)
                if all(parts.values()):
                    return source.format_map(parts), "+".join(cols)
                continue
            first_column = first_column or source
            value = (raw.get(source) or "").strip()
            if value:
                return value, source
        return None, first_column

    def _lookup(self, row: Row, name: str, value: Scalar) -> tuple[Scalar, bool]:
        """The looked-up value, and whether it is only the `"*"` fallback (a guess)."""
        table = self.lookups[name]
        key = str(value).strip().upper()
        if key in table:
            return table[key], False
        if "*" in table:
            return table["*"], True
        known = ", ".join(sorted(k for k in table if k != "*"))
        raise row.error(name, f"{value!r} has no mapping for {name} (known: {known})")

    def convert(self, row: Row, currency: str | None) -> None:
        """Turn each resolved value into its field's type (money once the currency is known)."""
        for name, kind in self.types.items():
            if name not in row.values:
                continue
            value = row.values[name]
            try:
                row.values[name] = self._convert(kind, value, currency, row)
            except ValueError as exc:
                raise row.error(name, str(exc)) from exc

    def _convert(self, kind: FieldType, value: Any, currency: str | None, row: Row) -> Any:
        if not isinstance(value, str):
            if kind == "money" and isinstance(value, int) and not isinstance(value, bool):
                return value
            if kind in ("int", "bool", "list"):
                return value
            value = str(value)
        if kind == "str":
            return value
        if kind == "int":
            if not _INTEGER.fullmatch(value.strip()):
                raise ValueError(f"{value!r} is not a whole number")
            return int(value)
        if kind == "bool":
            low = value.strip().lower()
            if low in _TRUE or low in _FALSE:
                return low in _TRUE
            raise ValueError(f"{value!r} is not yes/no")
        if kind == "date":
            return parse_date(value, self.date_formats)
        if kind == "list":
            return [p for p in (s.strip() for s in re.split(r"[;,|]", value)) if p]
        if kind == "email_list":
            return [p for p in re.split(r"[;,\s]+", value.strip()) if p]
        if kind == "phone":
            return normalize_phone(value, row.values.get("country"))
        # money
        if currency is None:
            raise ValueError("no currency to read the amount in")
        if self.money == "minor":
            amount = integer_minor(value)
        else:
            amount = decimal_to_minor(
                value, currency_exponent(currency), thousands=self.mapping.thousands_separator
            )
        if amount < 0:
            raise ValueError(f"{value!r} is negative")
        return amount

    def _currency(self, row: Row) -> str:
        cur = str(row.values.get("currency", "")).strip().upper()
        row.values["currency"] = cur
        return cur

    def parse(self, number: int, raw: dict[str, str]) -> Parsed:
        """The row as a Create model; RowError naming the column when it is not importable."""
        row = self.resolve(number, raw)
        for name in REQUIRED[self.kind]:
            if row.values.get(name) in (None, ""):
                raise row.error(name, "is empty" if row.columns.get(name) else "is required")
        currency = self._currency(row)
        if not _is_currency(currency):
            raise row.error("currency", f"{currency!r} is not an ISO 4217 currency code")
        if "country" in row.values:
            row.values["country"] = str(row.values["country"]).strip().upper()
        self.convert(row, currency)
        if self.kind == "customers":
            return self._customer(row)
        if self.kind == "invoices":
            return self._invoice(row)
        return self._payment(row)

    def _validate(self, row: Row, model: type[BaseModel], body: Mapping_[str, Any]) -> Any:
        try:
            return model.model_validate(body)
        except ValidationError as exc:
            err = exc.errors()[0]
            loc = [str(p) for p in err.get("loc", ())]
            name = _field_of(self.kind, loc)
            problem = validation_problem([err])
            reason = str(problem["errors"][0]["detail"]).split(": ", 1)[-1]
            value = row.values.get(name)
            if value is not None and not isinstance(value, list):
                reason = f"{value!r}: {reason}" if str(value) not in reason else reason
            raise row.error(name, reason) from exc

    def _customer(self, row: Row) -> ParsedCustomer:
        v = row.values
        emails: list[str] = list(v.get("contact_email") or [])
        contacts: list[dict[str, Any]] = []
        if emails or v.get("contact_phone"):
            contacts.append(
                {
                    "name": str(v.get("contact_name") or "Accounts payable"),
                    "email": emails[0] if emails else None,
                    "phone": v.get("contact_phone"),
                    "role": v.get("contact_role", "billing"),
                }
            )
        prefs: dict[str, Any] = {"cc": emails[1:]}
        if "po_required" in v:
            prefs["po_required"] = v["po_required"]
        if v.get("customer_gl_code"):
            prefs["customer_gl_code"] = v["customer_gl_code"]
        body: dict[str, Any] = {
            k: v[k]
            for k in (
                "external_id",
                "name",
                "currency",
                "timezone",
                "country",
                "locale",
                "payment_terms_days",
                "credit_limit",
                "tags",
            )
            if k in v
        }
        body |= {"contacts": contacts, "invoice_preferences": prefs}
        data = self._validate(row, CustomerCreate, body)
        return ParsedCustomer(row=row, data=data)

    def _invoice(self, row: Row) -> ParsedInvoice:
        v = row.values
        given_total: int | None = v.get("total")
        given_balance: int | None = v.get("balance")
        if given_total is None and given_balance is None:
            raise row.error("total", "no amount: the invoice needs its amount or its balance")
        total: int = given_total if given_total is not None else int(given_balance or 0)
        balance: int = given_balance if given_balance is not None else total
        if balance > total:
            shown_balance = row.raw.get(row.columns.get("balance") or "", balance)
            shown_total = row.raw.get(row.columns.get("total") or "", total)
            raise row.error(
                "balance",
                f"the open balance {shown_balance} is more than the invoice amount {shown_total}",
            )
        body: dict[str, Any] = {
            k: v[k]
            for k in (
                "customer_external_id",
                "number",
                "external_id",
                "issue_date",
                "due_date",
                "currency",
                "po_number",
                "gl_code",
                "kind",
            )
            if k in v
        }
        body["total"] = total
        data = self._validate(row, InvoiceCreate, body)
        return ParsedInvoice(
            row=row, data=data, balance=balance, balance_as_of=v.get("balance_as_of")
        )

    def _payment(self, row: Row) -> ParsedPayment:
        v = row.values
        body: dict[str, Any] = {
            k: v[k]
            for k in (
                "customer_external_id",
                "external_id",
                "amount",
                "currency",
                "method",
                "received_at",
                "reference",
                "in_transit",
            )
            if k in v
        }
        if isinstance(body.get("method"), str):
            body["method"] = body["method"].strip().lower()
        data = self._validate(row, PaymentCreate, body)
        return ParsedPayment(row=row, data=data, invoice_number=v.get("invoice_number"))

    def column_for(self, row: Row, api_field: str | None) -> str | None:
        """The source column behind a service error's field (`allocations/0/amount` → amount)."""
        if api_field is None:
            return None
        parts = api_field.split("/")
        if parts[0] == "allocations":
            name = "invoice_number" if parts[-1] == "invoice_id" else "amount"
        elif parts[0] in ("customer_id", "customer_external_id"):
            name = "customer_external_id"
        else:
            name = _field_of(self.kind, parts)
        return row.columns.get(name) or (None if name not in self.types else name)


_CURRENCY: TypeAdapter[str] = TypeAdapter(CurrencyCode)


def _is_currency(code: str) -> bool:
    try:
        _CURRENCY.validate_python(code)
    except ValidationError:
        return False
    return True


def _field_of(kind: Kind, loc: Sequence[str]) -> str:
    """The import field behind a model error location."""
    if not loc:
        return ""
    if loc[0] == "contacts":
        tail = loc[-1] if len(loc) > 2 else "email"
        return f"contact_{tail}" if f"contact_{tail}" in FIELDS[kind] else "contact_email"
    if loc[0] == "invoice_preferences":
        return "contact_email" if len(loc) > 1 and loc[1] == "cc" else loc[-1]
    return loc[0]


def rows_with_numbers(rows: Iterable[dict[str, str]]) -> Iterator[tuple[int, dict[str, str]]]:
    """Each row with its spreadsheet row number (the header is row 1)."""
    return enumerate(rows, start=FIRST_DATA_ROW)
