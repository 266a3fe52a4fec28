"""Tokens are stored only as their SHA-256 and found by it: the database compares digests
(a unique index), so nothing in Python compares a secret byte by byte."""

from __future__ import annotations

import hashlib
import secrets

from access_kit import client, mint
from duewise_service.auth import generate_token
from sqlalchemy import text
from ui_kit import Served, UiStack


def services(stack: UiStack) -> dict[str, Served]:
    return {
        "invoice": stack.invoice,
        "dunning": stack.dunning,
        "risk": stack.risk,
        "notify": stack.notify,
    }


async def test_a_stored_token_is_its_sha256_and_nothing_stores_the_plaintext(
    ui_stack: UiStack,
) -> None:
    for name, served in services(ui_stack).items():
        token = await mint(served, role="collector")
        async with client(served, token) as c:
            me = (await c.get("/v1/tokens/me")).json()
        async with served.engine.connect() as conn:
            row = (
                await conn.execute(
                    text("SELECT t.token_hash, t::text AS whole FROM api_token t WHERE id = :i"),
                    {"i": me["id"]},
                )
            ).one()
            unique = await conn.scalar(
                text(
                    "SELECT count(*) FROM pg_indexes WHERE tablename = 'api_token' "
                    "AND indexdef ILIKE '%UNIQUE%(token_hash)%'"
                )
            )
        assert row.token_hash == hashlib.sha256(token.encode()).hexdigest(), name
        assert token not in row.whole, name
        assert unique == 1, f"{name}: no unique index on api_token.token_hash"


async def test_a_token_is_found_by_its_digest_never_by_its_text(ui_stack: UiStack) -> None:
    for name, served in services(ui_stack).items():
        hashed, stored_plain = generate_token(), generate_token()
        async with served.engine.begin() as conn:
            for ident, value in (
                (f"tok_hashed{secrets.token_hex(8)}", hashlib.sha256(hashed.encode()).hexdigest()),
                # A row holding a token as plain text, as a careless import might write it.
                (f"tok_plain{secrets.token_hex(8)}", stored_plain),
            ):
                await conn.execute(
                    text(
                        "INSERT INTO api_token (id, name, role, scopes, token_hash) "
                        "VALUES (:i, 'rest-test', 'collector', '[]', :h)"
                    ),
                    {"i": ident, "h": value},
                )
        async with client(served, hashed) as c:
            assert (await c.get("/v1/tokens/me")).status_code == 200, name
        async with client(served, stored_plain) as c:
            assert (await c.get("/v1/tokens/me")).status_code == 401, name
