"""GET /v1/invoices?id=…&id=…: the states of many invoices in one request (a reminder's last
look), against the real app and database: the ids asked for, unknown ones absent, 1-200 ids,
one page without a cursor, and a collector's portfolio still enforced."""

from __future__ import annotations

import httpx

from .factories import new_customer, new_invoice, new_payment


async def _token(client: httpx.AsyncClient, role: str, subject: str | None = None) -> str:
    body: dict[str, str] = {"name": f"{role} {subject}", "role": role}
    if subject is not None:
        body["subject"] = subject
    r = await client.post("/v1/tokens", json=body)
    assert r.status_code == 201, r.text
    return str(r.json()["token"])


Params = list[tuple[str, str | int | float | bool | None]]


def _ids(*invoice_ids: str, **also: str) -> Params:
    """`id` once per invoice (repeated ids kept), then the other parameters."""
    params: Params = [("id", i) for i in invoice_ids]
    return params + list(also.items())


async def test_the_ids_asked_for_with_status_and_balance_unknown_ones_absent(
    client: httpx.AsyncClient, anon: httpx.AsyncClient
) -> None:
    c = await new_customer(client)
    a, b, other = [await new_invoice(client, c["id"]) for _ in range(3)]
    await new_payment(
        client, c["id"], 10000, allocations=[{"invoice_id": a["id"], "amount": 10000}]
    )
    # A service token, as the last looks use; ids in any order, one repeated, one unknown.
    service = {"Authorization": f"Bearer {await _token(client, 'service')}"}
    r = await anon.get(
        "/v1/invoices",
        params=_ids(b["id"], "inv_does_not_exist", a["id"], b["id"]),
        headers=service,
    )
    assert r.status_code == 200, r.text
    page = r.json()
    assert page["next_cursor"] is None
    got = {i["id"]: (i["status"], i["balance"]) for i in page["items"]}
    assert got == {a["id"]: ("paid", 0), b["id"]: ("open", 10000)}
    assert other["id"] not in got
    # The other filters still apply to the ids.
    r = await client.get("/v1/invoices", params=_ids(a["id"], b["id"], status="open"))
    assert [i["id"] for i in r.json()["items"]] == [b["id"]]


async def test_up_to_200_ids_in_one_page_whatever_the_limit(client: httpx.AsyncClient) -> None:
    c = await new_customer(client)
    mine = [(await new_invoice(client, c["id"]))["id"] for _ in range(3)]
    unknown = [f"inv_{n:032x}" for n in range(197)]  # as long as real ids
    r = await client.get("/v1/invoices", params=_ids(*unknown, *mine, limit="1"))
    assert r.status_code == 200, r.text
    assert sorted(i["id"] for i in r.json()["items"]) == sorted(mine)
    assert r.json()["next_cursor"] is None


async def test_more_than_200_ids_or_a_cursor_with_ids_is_a_422_naming_why(
    client: httpx.AsyncClient,
) -> None:
    r = await client.get("/v1/invoices", params=_ids(*(f"inv_{n:032x}" for n in range(201))))
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert "1..200" in r.json()["detail"]
    assert "got 201" in r.json()["detail"]
    c = await new_customer(client)
    await new_invoice(client, c["id"])
    await new_invoice(client, c["id"])
    first = await client.get("/v1/invoices", params={"limit": 1})
    cursor = first.json()["next_cursor"]
    assert cursor
    r = await client.get("/v1/invoices", params=_ids("inv_x", cursor=cursor))
    assert r.status_code == 422, r.text
    assert "cursor" in r.json()["detail"]


async def test_a_collectors_token_asks_by_ids_only_within_one_customer_of_their_own(
    client: httpx.AsyncClient, anon: httpx.AsyncClient
) -> None:
    carols = await new_customer(client, owner="carol")
    bobs = await new_customer(client, owner="bob")
    hers = await new_invoice(client, carols["id"])
    his = await new_invoice(client, bobs["id"])
    carol = {"Authorization": f"Bearer {await _token(client, 'collector', 'carol')}"}
    both = (hers["id"], his["id"])
    # Not narrowed to a customer: refused, ids or not.
    r = await anon.get("/v1/invoices", params=_ids(*both), headers=carol)
    assert r.status_code == 403, r.text
    # Narrowed to hers: only hers, Bob's id simply absent.
    r = await anon.get("/v1/invoices", params=_ids(*both, customer_id=carols["id"]), headers=carol)
    assert r.status_code == 200, r.text
    assert [i["id"] for i in r.json()["items"]] == [hers["id"]]
    # Narrowed to Bob's: the same 404 as for a customer that does not exist.
    r = await anon.get("/v1/invoices", params=_ids(*both, customer_id=bobs["id"]), headers=carol)
    assert r.status_code == 404, r.text
