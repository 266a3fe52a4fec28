"""Column mappings: how an ERP export's columns become duewise fields, per kind of row.

A mapping names, for each kind (`customers`, `invoices`, `payments`), where each duewise field
comes from. The source of a field is one of:

- a column name: `name: CustomerName`;
- a list of columns, the first non-empty one wins: `total: [OriginalInvoiceAmt, InvoiceAmt]`;
- a template of columns: `external_id: "{ARDivisionNo}-{CustomerNo}"` (empty if any is empty).

Fields are keyed by the duewise field (not by column) because one column may feed two fields
(`InvoiceNo` is the number and part of the external id) and a template reads several columns.
Besides `fields`, each kind has `defaults` (used when the file gives nothing), `constants`
(always used, whatever the file says), `lookups` (source value → duewise value, `"*"` as the
fallback; e.g. Sage terms codes → days) and may override the file-wide `date_formats` and
`money` ("decimal": dollars such as `1234.50`, converted exactly with the currency's exponent;
"minor": an integer count of minor units already).

`load_mapping("sage100")` returns the built-in Sage 100 mapping; any other argument is a path to
a YAML (`.yaml`/`.yml`) or TOML (`.toml`) file, or inline JSON (`{...}`); see
`mappings/generic-example.yaml`.
"""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

Kind = Literal["customers", "invoices", "payments"]
KINDS: tuple[Kind, ...] = ("customers", "invoices", "payments")
MoneyFormat = Literal["minor", "decimal"]
Scalar = str | int | bool
FieldSource = str | list[str]

FieldType = Literal["str", "int", "bool", "money", "date", "list", "phone", "email_list"]

#: Every field an import can set, per kind, with its type.
FIELDS: dict[Kind, dict[str, FieldType]] = {
    "customers": {
        "external_id": "str",
        "name": "str",
        "currency": "str",
        "timezone": "str",
        "country": "str",
        "locale": "str",
        "payment_terms_days": "int",
        "credit_limit": "money",
        "tags": "list",
        "contact_name": "str",
        "contact_email": "email_list",
        "contact_phone": "phone",
        "contact_role": "str",
        "po_required": "bool",
        "customer_gl_code": "str",
    },
    "invoices": {
        "customer_external_id": "str",
        "number": "str",
        "external_id": "str",
        "issue_date": "date",
        "due_date": "date",
        "currency": "str",
        "total": "money",
        "balance": "money",
        "balance_as_of": "date",
        "po_number": "str",
        "gl_code": "str",
        "kind": "str",
    },
    "payments": {
        "customer_external_id": "str",
        "external_id": "str",
        "amount": "money",
        "currency": "str",
        "method": "str",
        "received_at": "date",
        "reference": "str",
        "invoice_number": "str",
        "in_transit": "bool",
    },
}

#: Fields a row cannot do without (invoices also need `total` or `balance`).
REQUIRED: dict[Kind, tuple[str, ...]] = {
    "customers": ("external_id", "name", "currency", "country"),
    "invoices": ("customer_external_id", "number", "issue_date", "currency"),
    "payments": ("customer_external_id", "amount", "received_at", "currency", "method"),
}

_PLACEHOLDER = re.compile(r"\{([^{}]+)\}")


def template_columns(source: str) -> list[str]:
    """The columns a template names (`"{A}-{B}"` → `["A", "B"]`); `[]` for a plain column."""
    return _PLACEHOLDER.findall(source)


class KindMapping(BaseModel):
    """How one kind of row (customers, invoices or payments) is read."""

    model_config = ConfigDict(extra="forbid")

    fields: dict[str, FieldSource]
    defaults: dict[str, Scalar] = Field(default_factory=dict)
    constants: dict[str, Scalar | list[str]] = Field(default_factory=dict)
    lookups: dict[str, dict[str, Scalar]] = Field(default_factory=dict)
    date_formats: list[str] | None = None
    money: MoneyFormat | None = None
    auto_allocate: bool = Field(
        default=False,
        description="payments only: with no invoice named, pay the oldest due invoices first "
        "(false: the payment stays as customer credit, as an on-account receipt in the ERP)",
    )


class Mapping(BaseModel):
    """A named set of column mappings with the file-wide formats and defaults."""

    model_config = ConfigDict(extra="forbid")

    name: str
    description: str = ""
    delimiter: str = Field(default=",", min_length=1, max_length=1)
    encoding: str = "utf-8-sig"
    date_formats: list[str] = Field(default_factory=lambda: ["%Y-%m-%d"], min_length=1)
    money: MoneyFormat = "decimal"
    thousands_separator: str | None = Field(default=None, max_length=1)
    defaults: dict[str, Scalar] = Field(
        default_factory=dict,
        description="file-wide defaults (currency, timezone, country, locale, "
        "payment_terms_days…), used by every kind that has the field",
    )
    customers: KindMapping | None = None
    invoices: KindMapping | None = None
    payments: KindMapping | None = None

    @model_validator(mode="after")
    def _known_fields(self) -> Mapping:
        for kind in KINDS:
            km = self.for_kind_or_none(kind)
            if km is None:
                continue
            known = FIELDS[kind]
            named = {*km.fields, *km.defaults, *km.constants, *km.lookups}
            unknown = sorted(named - set(known))
            if unknown:
                raise ValueError(
                    f"{kind}: unknown duewise field(s) {unknown}; known: {sorted(known)}"
                )
        return self

    def for_kind_or_none(self, kind: Kind) -> KindMapping | None:
        km: KindMapping | None = getattr(self, kind)
        return km

    def for_kind(self, kind: Kind) -> KindMapping:
        """The mapping of `kind`; ValueError when this mapping has none."""
        km = self.for_kind_or_none(kind)
        if km is None:
            raise ValueError(f"mapping {self.name!r} has no section for {kind}")
        return km

    def defaults_for(self, kind: Kind) -> dict[str, Scalar]:
        """File-wide defaults (only the fields `kind` has) overlaid by the kind's own."""
        known = FIELDS[kind]
        merged = {k: v for k, v in self.defaults.items() if k in known}
        merged.update(self.for_kind(kind).defaults)
        return merged

    def date_formats_for(self, kind: Kind) -> list[str]:
        return self.for_kind(kind).date_formats or self.date_formats

    def money_for(self, kind: Kind) -> MoneyFormat:
        return self.for_kind(kind).money or self.money


class MappingError(ValueError):
    """A mapping that cannot be loaded or is invalid; the message says which and why."""


# --- The built-in Sage 100 mapping --------------------------------------------------------

#: US states and Canadian provinces → their main IANA zone (the zone of most of the
#: population; override per customer afterwards where a state spans two).
_REGION_TIMEZONES: dict[str, Scalar] = {
    **dict.fromkeys(
        [
            "CT",
            "DE",
            "DC",
            "FL",
            "GA",
            "IN",
            "KY",
            "ME",
            "MD",
            "MA",
            "MI",
            "NH",
            "NJ",
            "NY",
            "NC",
            "OH",
            "PA",
            "RI",
            "SC",
            "VT",
            "VA",
            "WV",
        ],
        "America/New_York",
    ),
    **dict.fromkeys(
        [
            "AL",
            "AR",
            "IL",
            "IA",
            "KS",
            "LA",
            "MN",
            "MS",
            "MO",
            "NE",
            "ND",
            "OK",
            "SD",
            "TN",
            "TX",
            "WI",
        ],
        "America/Chicago",
    ),
    **dict.fromkeys(["CO", "ID", "MT", "NM", "UT", "WY"], "America/Denver"),
    "AZ": "America/Phoenix",
    **dict.fromkeys(["CA", "NV", "OR", "WA"], "America/Los_Angeles"),
    "AK": "America/Anchorage",
    "HI": "Pacific/Honolulu",
    "PR": "America/Puerto_Rico",
    **dict.fromkeys(["ON", "QC"], "America/Toronto"),
    "BC": "America/Vancouver",
    "AB": "America/Edmonton",
    **dict.fromkeys(["MB", "SK"], "America/Winnipeg"),
    **dict.fromkeys(["NS", "NB", "PE"], "America/Halifax"),
    "NL": "America/St_Johns",
}

#: Sage 100 stores a 3-letter country code; duewise uses ISO 3166-1 alpha-2.
_COUNTRIES: dict[str, Scalar] = {
    "USA": "US", "US": "US", "CAN": "CA", "CA": "CA", "MEX": "MX", "MX": "MX",
    "GBR": "GB", "GB": "GB", "UK": "GB", "IRL": "IE", "DEU": "DE", "FRA": "FR",
    "NLD": "NL", "BEL": "BE", "CHE": "CH", "AUT": "AT", "ITA": "IT", "ESP": "ES",
    "PRT": "PT", "SWE": "SE", "NOR": "NO", "DNK": "DK", "FIN": "FI", "POL": "PL",
    "AUS": "AU", "NZL": "NZ", "JPN": "JP", "CHN": "CN", "HKG": "HK", "SGP": "SG",
    "IND": "IN", "KOR": "KR", "TWN": "TW", "BRA": "BR", "ARG": "AR", "CHL": "CL",
    "COL": "CO", "PER": "PE", "ZAF": "ZA", "ISR": "IL", "ARE": "AE", "SAU": "SA",
    "KWT": "KW", "PRI": "PR",
}  # fmt: skip

_TERMS_DAYS: dict[str, Scalar] = {
    "00": 0, "01": 30, "02": 30, "03": 15, "04": 0, "05": 0, "06": 45, "07": 60, "08": 90,
    "10": 10, "NET30": 30, "NET60": 60,
}  # fmt: skip

_PAYMENT_TYPES: dict[str, Scalar] = {
    **dict.fromkeys(["CHECK", "CHK", "CK"], "check"),
    **dict.fromkeys(["ACH", "EFT"], "ach"),
    **dict.fromkeys(["WIRE", "WT"], "wire"),
    **dict.fromkeys(
        ["CC", "CREDIT CARD", "VISA", "MC", "MASTERCARD", "AMEX", "DISC", "DISCOVER"], "card"
    ),
    "CASH": "cash",
    "*": "other",
}

SAGE100 = Mapping(
    name="sage100",
    description="Sage 100 AR_Customer, AR_OpenInvoice and cash receipts history exports (CSV)",
    date_formats=["%m/%d/%Y", "%Y-%m-%d", "%Y-%m-%d %H:%M:%S", "%m/%d/%Y %H:%M:%S"],
    money="decimal",
    thousands_separator=",",
    defaults={
        "currency": "USD",
        "country": "US",
        "timezone": "America/New_York",
        "locale": "en-US",
        "payment_terms_days": 30,
    },
    customers=KindMapping(
        fields={
            "external_id": "{ARDivisionNo}-{CustomerNo}",
            "name": "CustomerName",
            "country": "CountryCode",
            "timezone": "State",
            "payment_terms_days": "TermsCode",
            "credit_limit": "CreditLimit",
            "contact_name": "ContactCode",
            "contact_email": "EmailAddress",
            "contact_phone": "TelephoneNo",
        },
        defaults={"contact_name": "Accounts payable", "contact_role": "billing"},
        lookups={
            "country": _COUNTRIES,
            "timezone": {**_REGION_TIMEZONES, "*": "America/New_York"},
            # Terms codes are each company's own (AR_TermsCode); these are common ones. An
            # unknown code falls back to 30 days and, being a guess, never overwrites a
            # customer on re-import. Due dates come from InvoiceDueDate anyway.
            "payment_terms_days": {**_TERMS_DAYS, "*": 30},
        },
    ),
    invoices=KindMapping(
        fields={
            "customer_external_id": "{ARDivisionNo}-{CustomerNo}",
            "number": "InvoiceNo",
            "external_id": "{ARDivisionNo}-{CustomerNo}-{InvoiceNo}",
            "kind": "InvoiceType",
            "issue_date": "InvoiceDate",
            "due_date": "InvoiceDueDate",
            "total": ["OriginalInvoiceAmt", "InvoiceAmt"],
            "balance": "Balance",
            "po_number": "CustomerPONo",
        },
        # IN invoice, DM debit memo, FC finance charge; CM credit memos, PP prepayments and
        # CA cash rows are not invoices and are rejected as such.
        lookups={"kind": {"IN": "standard", "DM": "standard", "FC": "fee"}},
        defaults={"kind": "standard"},
    ),
    payments=KindMapping(
        fields={
            "customer_external_id": "{ARDivisionNo}-{CustomerNo}",
            "external_id": [
                "{ARDivisionNo}-{CustomerNo}-{DepositNo}-{CheckNo}-{InvoiceNo}",
                "{ARDivisionNo}-{CustomerNo}-{DepositNo}-{CheckNo}",
            ],
            "amount": ["CashReceived", "PaymentAmt", "AmountPosted"],
            "received_at": ["DepositDate", "PostingDate", "TransactionDate"],
            "reference": "CheckNo",
            "method": "PaymentType",
            "invoice_number": "InvoiceNo",
        },
        lookups={
            "method": _PAYMENT_TYPES,
        },
        defaults={"method": "check"},
    ),
)

BUILTIN: dict[str, Mapping] = {"sage100": SAGE100}
EXAMPLES = Path(__file__).parent / "mappings"


def parse_mapping(data: Any, *, origin: str) -> Mapping:
    """A Mapping from already-decoded YAML/TOML/JSON; MappingError naming what is wrong."""
    if not isinstance(data, dict):
        raise MappingError(f"{origin}: a mapping must be a table/object at the top level")
    data = dict(data)
    data.setdefault("name", origin)
    try:
        return Mapping.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '(top)'}: {e['msg']}" for e in exc.errors()
        )
        raise MappingError(f"{origin}: {problems}") from exc


def mapping_names() -> list[str]:
    """The mappings known by name: the built-ins and the bundled example files."""
    return [*BUILTIN, *sorted(p.stem for p in EXAMPLES.glob("*.yaml"))]


def mapping_from_text(text: str, *, origin: str = "inline") -> Mapping:
    """A mapping from JSON or YAML text (JSON is YAML, so one parser reads both)."""
    try:
        data: Any = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise MappingError(f"{origin} mapping: not valid JSON or YAML ({exc})") from exc
    return parse_mapping(data, origin=origin)


def load_mapping(spec: str, *, allow_files: bool = True) -> Mapping:
    """A mapping by name (`sage100`, `generic-example`), inline JSON, or — with `allow_files`,
    never over HTTP — a YAML / TOML file by path."""
    if spec in BUILTIN:
        return BUILTIN[spec]
    stripped = spec.strip()
    if stripped.startswith("{"):
        try:
            return parse_mapping(json.loads(stripped), origin="inline")
        except json.JSONDecodeError as exc:
            raise MappingError(f"inline mapping: not valid JSON ({exc})") from exc
    if re.fullmatch(r"[A-Za-z0-9_-]+", spec) and (EXAMPLES / f"{spec}.yaml").is_file():
        path = EXAMPLES / f"{spec}.yaml"
    elif allow_files and Path(spec).is_file():
        path = Path(spec)
    else:
        what = "a file, " if allow_files else ""
        raise MappingError(
            f"mapping {spec!r}: not a known name ({', '.join(mapping_names())}), {what}"
            "or inline JSON"
        )
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix == ".toml":
            data: Any = tomllib.loads(text)
        else:
            data = yaml.safe_load(text)
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as exc:
        raise MappingError(f"{path}: cannot be read ({exc})") from exc
    return parse_mapping(data, origin=path.stem)
