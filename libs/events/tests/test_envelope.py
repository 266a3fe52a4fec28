import datetime as dt

import pytest
from duewise_events.catalogue import CATALOGUE, InvoiceIssued
from duewise_events.envelope import Envelope, EnvelopeError


def issued() -> InvoiceIssued:
    return InvoiceIssued(
        customer_id="cus_1",
        invoice_id="inv_1",
        number="INV-1",
        issue_date=dt.date(2026, 11, 23),
        due_date=dt.date(2026, 12, 23),
        currency="EUR",
        total=37500,
        balance=37500,
    )


def test_binary_mode_round_trip() -> None:
    env = Envelope.wrap(issued(), source="duewise/invoice")
    headers = dict(env.headers())
    assert headers["ce_specversion"] == b"1.0"
    assert headers["ce_type"] == b"invoice.issued.v1"
    assert headers["ce_id"] == env.id.encode()
    assert headers["ce_source"] == b"duewise/invoice"
    assert headers["content-type"] == b"application/json"
    back = Envelope.from_record(key=b"cus_1", value=env.body(), headers=env.headers())
    assert back.id == env.id
    assert back.key == "cus_1"
    assert back.event() == issued()


@pytest.mark.parametrize(
    ("value", "headers", "message"),
    [
        (b"{}", [("ce_id", b"1")], "missing CloudEvents header"),
        (b"not json", None, "body is not JSON"),
        (b"[1]", None, "not a JSON object"),
        (b'{"customer_id": "c"}', None, "does not match its schema"),
    ],
)
def test_poison_is_named(
    value: bytes, headers: list[tuple[str, bytes]] | None, message: str
) -> None:
    good = Envelope.wrap(issued(), source="s").headers()
    with pytest.raises(EnvelopeError, match=message):
        Envelope.from_record(key=b"k", value=value, headers=headers or good).event()


def test_money_is_never_a_float() -> None:
    with pytest.raises(ValueError, match="total"):
        InvoiceIssued.model_validate({**issued().model_dump(mode="json"), "total": 375.0})


def test_every_type_is_versioned_and_unique() -> None:
    types = [cls.TYPE for cls in CATALOGUE]
    assert len(types) == len(set(types))
    for t in types:
        assert t.rsplit(".", 1)[-1].startswith("v"), t
