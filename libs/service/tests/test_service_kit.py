"""The plumbing on its own: URL spellings, and problem+json from a bare FastAPI app."""

from __future__ import annotations

import httpx
import pytest
from duewise_service.problems import DomainError, install_problem_handlers
from duewise_service.urls import plain_url, sqlalchemy_url
from fastapi import FastAPI
from pydantic import BaseModel, Field


def test_urls_in_both_spellings() -> None:
    assert sqlalchemy_url("postgres://u:p@h:5/db") == "postgresql+asyncpg://u:p@h:5/db"
    assert plain_url("postgresql+asyncpg://u@h/db") == "postgresql://u@h/db"
    with pytest.raises(ValueError, match="postgresql:// URL"):
        sqlalchemy_url("mysql://u@h/db")


class Body(BaseModel):
    amount: int = Field(strict=True, ge=0)


def app() -> FastAPI:
    a = FastAPI()
    install_problem_handlers(a)

    @a.post("/things")
    async def things(body: Body) -> dict[str, int]:
        if body.amount == 13:
            raise DomainError(409, "Unlucky amount", "amount: 13 is refused", "amount")
        return {"amount": body.amount}

    @a.get("/boom")
    async def boom() -> None:
        raise RuntimeError("secret internals")

    return a


async def test_every_error_is_a_problem_naming_the_field() -> None:
    transport = httpx.ASGITransport(app=app(), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        r = await client.post("/things", json={"amount": 1.5})
        assert r.status_code == 422
        assert r.headers["content-type"] == "application/problem+json"
        assert r.json()["errors"][0]["pointer"] == "#/amount"
        assert "minor units" in r.json()["detail"]
        r = await client.post("/things", json={"amount": 13})
        assert (r.status_code, r.json()["field"]) == (409, "amount")
        assert r.json()["type"].endswith("/unlucky-amount")
        r = await client.get("/nowhere")
        assert (r.status_code, r.json()["title"]) == (404, "Not found")
        r = await client.get("/boom")
        assert r.status_code == 500
        assert "secret" not in r.text
