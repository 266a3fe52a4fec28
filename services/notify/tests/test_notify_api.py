"""The notify API: tokens, the delivery log, manual messages, previews, responses and reply
links, and webhook endpoints signed per Standard Webhooks."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import uvicorn
from duewise_dev.catcher import Catcher
from fastapi import FastAPI, Request, Response
from notify.config import Settings
from notify.lastlook import InvoiceState
from notify.main import create_app
from notify_kit import (
    apply_events,
    customer,
    drain,
    invoice,
    mails_to,
    make_sender,
    messages,
    outbox_events,
    reminder,
    text_of,
)
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from standardwebhooks import Webhook


class Owed:
    async def states(self, invoice_ids: list[str]) -> dict[str, InvoiceState]:
        return {i: InvoiceState(status="open", balance=1_234_56) for i in invoice_ids}


# --- access -------------------------------------------------------------------------------


async def test_everything_but_health_and_customer_pages_needs_a_token(
    notify_app: FastAPI,
) -> None:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=notify_app), base_url="http://notify.test"
    ) as anon:
        assert (await anon.get("/healthz")).status_code == 200
        assert (await anon.get("/readyz")).status_code == 200
        for method, path in (
            ("GET", "/v1/messages"),
            ("POST", "/v1/messages"),
            ("POST", "/v1/previews"),
            ("GET", "/v1/templates"),
            ("POST", "/v1/responses"),
            ("GET", "/v1/webhook-endpoints"),
            ("POST", "/v1/bounces"),
        ):
            resp = await anon.request(method, path)
            assert resp.status_code == 401, (method, path)
            assert resp.headers["content-type"].startswith("application/problem+json")


async def test_a_collector_reads_and_writes_messages_but_cannot_manage_webhooks(
    nclient: httpx.AsyncClient, notify_app: FastAPI
) -> None:
    created = await nclient.post("/v1/tokens", json={"name": "carol", "role": "collector"})
    assert created.status_code == 201, created.text
    token = created.json()["token"]
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=notify_app),
        base_url="http://notify.test",
        headers={"Authorization": f"Bearer {token}"},
    ) as carol:
        assert (await carol.get("/v1/messages")).status_code == 200
        denied = await carol.get("/v1/webhook-endpoints")
        assert denied.status_code == 403
        assert "webhooks:admin" in denied.json()["detail"]


# --- the delivery log and manual messages -------------------------------------------------


async def test_a_manual_message_is_queued_sent_and_logged_with_its_attempts(
    maker: async_sessionmaker[AsyncSession],
    notify_settings: Settings,
    catcher: Catcher,
    nclient: httpx.AsyncClient,
) -> None:
    c = customer(email_="manual@acme.example")
    await apply_events(maker, c)
    body = {
        "customer_id": c.customer_id,
        "subject": "About your account",
        "body": "Could you call me back about the March invoices?\n\nThanks, Carol",
    }
    first = await nclient.post("/v1/messages", json=body, headers={"Idempotency-Key": "m-1"})
    assert first.status_code == 202, first.text
    again = await nclient.post("/v1/messages", json=body, headers={"Idempotency-Key": "m-1"})
    assert again.json()["id"] == first.json()["id"]  # a retried request queues nothing new
    await drain(make_sender(notify_settings, Owed(), maker))  # type: ignore[arg-type]
    [mail] = mails_to(catcher, "manual@acme.example")
    assert mail["Subject"] == "About your account"
    assert "March invoices" in text_of(mail)

    detail = (await nclient.get(f"/v1/messages/{first.json()['id']}")).json()
    assert detail["status"] == "sent"
    assert detail["created_by"] == "DUEWISE_ADMIN_TOKEN"
    assert detail["recipients"][0]["address"] == "manual@acme.example"
    assert [a["outcome"] for a in detail["delivery_attempts"]] == ["sent"]
    assert detail["delivery_attempts"][0]["response"].startswith("250")
    assert "March invoices" in detail["body_text"]

    page = (await nclient.get("/v1/messages", params={"customer_id": c.customer_id})).json()
    assert [m["id"] for m in page["items"]] == [first.json()["id"]]


async def test_bad_manual_messages_are_refused_naming_the_field(
    maker: async_sessionmaker[AsyncSession], nclient: httpx.AsyncClient
) -> None:
    c = customer()
    await apply_events(maker, c)
    cases: list[tuple[dict[str, Any], str]] = [
        ({"customer_id": "cus_nobody", "subject": "x", "body": "y"}, "customer_id"),
        ({"customer_id": c.customer_id, "subject": "", "body": "y"}, "subject"),
        ({"customer_id": c.customer_id, "subject": "x", "body": ""}, "body"),
        (
            {"customer_id": c.customer_id, "subject": "x", "body": "y", "contact_ids": ["con_x"]},
            "contact_ids",
        ),
        ({"customer_id": c.customer_id, "subject": "x", "body": "y", "channel": "fax"}, "channel"),
    ]
    for body, field in cases:
        resp = await nclient.post("/v1/messages", json=body)
        assert resp.status_code == 422, (body, resp.text)
        assert field in resp.text
    assert await messages(maker) == []  # nothing half-written
    assert (await nclient.get("/v1/messages", params={"status": "nope"})).status_code == 422
    assert (await nclient.get("/v1/messages", params={"cursor": "%%%"})).status_code == 422


# --- previews and templates ----------------------------------------------------------------


async def test_preview_renders_samples_and_real_customers(
    maker: async_sessionmaker[AsyncSession], nclient: httpx.AsyncClient
) -> None:
    sample = await nclient.post(
        "/v1/previews", json={"kind": "reminder", "tone": "final", "locale": "de-DE"}
    )
    assert sample.status_code == 200, sample.text
    assert sample.json()["sample"] is True
    assert "€" in sample.json()["text"]
    c = customer(locale="fr-FR")
    inv = invoice(c.customer_id, number="FR-77", total=99_990)
    await apply_events(maker, c, inv)
    real = await nclient.post(
        "/v1/previews",
        json={"kind": "invoice", "customer_id": c.customer_id, "invoice_ids": [inv.invoice_id]},
    )
    assert real.status_code == 200, real.text
    assert "FR-77" in real.json()["subject"]
    assert "999,90" in real.json()["text"]
    assert real.json()["sample"] is False
    missing = await nclient.post(
        "/v1/previews",
        json={"kind": "invoice", "customer_id": c.customer_id, "invoice_ids": ["inv_x"]},
    )
    assert missing.status_code == 422
    listed = (await nclient.get("/v1/templates", params={"kind": "reminder"})).json()
    assert {(t["tone"], t["locale"]) for t in listed if t["channel"] == "email"} >= {
        ("friendly", "en"),
        ("final", "fr"),
        ("firm", "de"),
    }


# --- responses and reply links --------------------------------------------------------------


async def test_a_customer_answers_a_reminder_through_its_reply_link(
    maker: async_sessionmaker[AsyncSession],
    notify_settings: Settings,
    catcher: Catcher,
    nclient: httpx.AsyncClient,
) -> None:
    c = customer(email_="reply@acme.example")
    inv = invoice(c.customer_id, imported=True)
    await apply_events(maker, c, inv, reminder([inv]))
    await drain(make_sender(notify_settings, Owed(), maker))  # type: ignore[arg-type]
    [mail] = mails_to(catcher, "reply@acme.example")
    link = next(
        word for word in text_of(mail).split() if "/r/" in word and "reason=not_received" in word
    )
    form = await nclient.get(link)
    assert form.status_code == 200
    assert "value=not_received required checked" in form.text
    assert await outbox_events(maker, "response.logged.v1") == []  # opening it changed nothing
    path = link.split("?")[0]
    done = await nclient.post(path, data={"reason": "not_received", "note": "wrong inbox"})
    assert done.status_code == 200
    [logged] = await outbox_events(maker, "response.logged.v1")
    assert logged["reason"] == "not_received"
    assert logged["source"] == "reply_link"
    assert logged["invoice_ids"] == [inv.invoice_id]
    assert logged["note"] == "wrong inbox"
    tampered = path[:-3] + ("aaa" if not path.endswith("aaa") else "bbb")
    assert (await nclient.post(tampered, data={"reason": "dispute"})).status_code == 404
    assert len(await outbox_events(maker, "response.logged.v1")) == 1


async def test_a_collector_logs_a_response_with_a_reason_code(
    maker: async_sessionmaker[AsyncSession], nclient: httpx.AsyncClient
) -> None:
    c = customer()
    await apply_events(maker, c)
    resp = await nclient.post(
        "/v1/responses",
        json={"customer_id": c.customer_id, "reason": "cash_flow", "note": "end of quarter"},
    )
    assert resp.status_code == 201, resp.text
    assert resp.json()["logged_by"] == "DUEWISE_ADMIN_TOKEN"
    bad = await nclient.post("/v1/responses", json={"customer_id": c.customer_id, "reason": "busy"})
    assert bad.status_code == 422
    assert "reason" in bad.text
    [logged] = await outbox_events(maker, "response.logged.v1")
    assert logged["source"] == "collector"
    listed = (await nclient.get("/v1/responses", params={"customer_id": c.customer_id})).json()
    assert [r["reason"] for r in listed["items"]] == ["cash_flow"]


# --- webhooks ------------------------------------------------------------------------------


class Receiver:
    """A real HTTP server on loopback that records what it is sent and answers `status`."""

    def __init__(self) -> None:
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.status = 204
        app = FastAPI()

        @app.post("/hook")
        async def hook(request: Request) -> Response:
            self.requests.append((dict(request.headers), await request.body()))
            return Response(status_code=self.status)

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/hook"
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    r = Receiver()
    task = asyncio.create_task(r.server.serve(sockets=[r.sock]))
    while not r.server.started:  # noqa: ASYNC110 - uvicorn offers no event to wait on
        await asyncio.sleep(0.01)
    try:
        yield r
    finally:
        r.server.should_exit = True
        await task


async def test_webhooks_are_signed_per_standard_webhooks_and_410_disables_the_endpoint(
    maker: async_sessionmaker[AsyncSession],
    notify_settings: Settings,
    nclient: httpx.AsyncClient,
    receiver: Receiver,
) -> None:
    created = await nclient.post(
        "/v1/webhook-endpoints",
        json={"url": receiver.url, "event_types": ["invoice.issued.v1"]},
    )
    assert created.status_code == 201, created.text
    secret = created.json()["secret"]
    assert secret.startswith("whsec_")
    c = customer()
    inv = invoice(c.customer_id)
    await apply_events(maker, c, inv)  # customer.created is not subscribed to
    sender = make_sender(notify_settings, Owed(), maker)  # type: ignore[arg-type]
    await drain(sender)

    [(headers, body)] = receiver.requests
    payload = Webhook(secret).verify(body, headers)  # the reference implementation
    assert payload["type"] == "invoice.issued.v1"
    assert payload["data"]["invoice_id"] == inv.invoice_id
    [hook] = await messages(maker, kind="webhook")
    assert headers["webhook-id"] == hook.id
    with pytest.raises(Exception, match="signature"):
        Webhook(secret).verify(body.replace(b"invoice", b"lnvoice"), headers)

    receiver.status = 410
    await apply_events(maker, invoice(c.customer_id))
    await drain(sender)
    endpoint = (await nclient.get("/v1/webhook-endpoints")).json()[0]
    assert endpoint["enabled"] is False
    assert "410" in endpoint["disabled_reason"]
    await apply_events(maker, invoice(c.customer_id))
    await drain(sender)
    assert len(receiver.requests) == 2  # nothing more after the 410


async def test_a_failing_webhook_is_retried_with_backoff(
    maker: async_sessionmaker[AsyncSession],
    notify_settings: Settings,
    nclient: httpx.AsyncClient,
    receiver: Receiver,
) -> None:
    receiver.status = 503
    await nclient.post("/v1/webhook-endpoints", json={"url": receiver.url})
    await apply_events(maker, customer())
    await drain(make_sender(notify_settings, Owed(), maker))  # type: ignore[arg-type]
    [hook] = await messages(maker, kind="webhook")
    assert hook.status == "pending"
    assert hook.attempts == 1
    assert hook.reason is not None
    assert "503" in hook.reason
    assert len(receiver.requests) == 1


async def test_private_webhook_targets_are_refused_unless_allowed(
    notify_settings: Settings,
) -> None:
    strict = create_app(notify_settings.model_copy(update={"webhook_allow_private": False}))
    async with (
        strict.router.lifespan_context(strict),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=strict),
            base_url="http://notify.test",
            headers={"Authorization": f"Bearer {notify_settings.admin_token.get_secret_value()}"},  # type: ignore[union-attr]
        ) as client,
    ):
        for url in (
            "http://127.0.0.1:9/hook",
            "http://localhost/hook",
            "http://10.1.2.3/x",
            "ftp://example.com/",
        ):
            resp = await client.post("/v1/webhook-endpoints", json={"url": url})
            assert resp.status_code == 422, (url, resp.text)
            assert "url" in resp.text
        unknown = await client.post(
            "/v1/webhook-endpoints",
            json={"url": "https://example.com/", "event_types": ["nope.v1"]},
        )
        assert unknown.status_code == 422
