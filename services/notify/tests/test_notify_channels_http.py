"""SMS and webhook adapters against real local HTTP servers (the devstack catcher, a receiver)."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import httpx
import pytest
import uvicorn
from duewise_dev._util import free_port
from duewise_dev.catcher import Catcher
from fastapi import FastAPI, Request, Response
from notify.channels.sms import SmsError, TwilioSms
from notify.channels.webhooks import (
    TargetRefused,
    WebhookError,
    WebhookSender,
    new_secret,
)
from standardwebhooks import Webhook

SID = "AC" + "0" * 32


class Receiver:
    """A real HTTP server that records requests and answers as told."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, str], bytes]] = []
        self.status = 200
        self.body: dict[str, Any] = {"ok": True}
        self.headers: dict[str, str] = {}
        self.delay = 0.0
        self.port = 0
        app = FastAPI()

        @app.post("/{path:path}")
        async def anything(path: str, request: Request) -> Response:
            self.requests.append((path, dict(request.headers), await request.body()))
            await asyncio.sleep(self.delay)
            return Response(
                json.dumps(self.body),
                status_code=self.status,
                headers=self.headers,
                media_type="application/json",
            )

        self._server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
        self._task: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        self._task = asyncio.create_task(self._server.serve(sockets=[sock]))
        while not self._server.started:
            if self._task.done():
                await self._task
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        self._server.should_exit = True
        if self._task is not None:
            await self._task


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    r = Receiver()
    await r.start()
    try:
        yield r
    finally:
        await r.stop()


@pytest.fixture
async def catcher() -> AsyncIterator[Catcher]:
    c = Catcher(smtp_port=free_port(), http_port=free_port())
    await c.start()
    try:
        yield c
    finally:
        await c.stop()


# SMS


async def test_twilio_adapter_against_the_catcher(catcher: Catcher) -> None:
    async with httpx.AsyncClient() as http:
        sms = TwilioSms(
            account_sid=SID,
            auth_token="secret",
            from_number="+15005550006",
            base_url=catcher.http_url,
            http=http,
        )
        result = await sms.send("+4915112345678", "INV-1 is due", idempotency_key="m-1")
        assert result.provider_id.startswith("SM")
        assert result.status == "queued"
        assert result.raw["to"] == "+4915112345678"
        again = await sms.send("+4915112345678", "INV-1 is due", idempotency_key="m-1")
        assert again.provider_id == result.provider_id

        with pytest.raises(SmsError) as info:
            await sms.send("0151 123", "x", idempotency_key="m-2")
    assert info.value.permanent is True
    assert info.value.code == 21211
    assert info.value.status_code == 400
    assert [(s.to, s.body, s.from_) for s in catcher.store.sms] == [
        ("+4915112345678", "INV-1 is due", "+15005550006")
    ]


@pytest.mark.parametrize(
    ("status", "code", "permanent"),
    [
        (400, 21610, True),  # the recipient replied STOP
        (404, 20404, True),
        (401, 20003, False),  # our credentials: fix the config and retry
        (429, 20429, False),
        (500, None, False),
        (503, None, False),
    ],
)
async def test_twilio_errors_say_whether_to_retry(
    receiver: Receiver, status: int, code: int | None, permanent: bool
) -> None:
    receiver.status = status
    receiver.body = {"code": code, "message": "nope", "status": status} if code else {}
    sms = TwilioSms(
        account_sid=SID, auth_token="t", from_number="+15005550006", base_url=receiver.url
    )
    with pytest.raises(SmsError) as info:
        await sms.send("+14155550100", "hello", idempotency_key="k")
    assert info.value.permanent is permanent
    assert info.value.status_code == status
    assert info.value.code == code
    [(path, headers, body)] = receiver.requests
    assert path == f"2010-04-01/Accounts/{SID}/Messages.json"
    assert headers["authorization"].startswith("Basic ")
    assert headers["idempotency-key"] == "k"
    assert body == b"To=%2B14155550100&From=%2B15005550006&Body=hello"


async def test_twilio_unreachable_is_transient() -> None:
    sms = TwilioSms(
        account_sid=SID,
        auth_token="t",
        from_number="+1",
        base_url=f"http://127.0.0.1:{free_port()}",
    )
    with pytest.raises(SmsError) as info:
        await sms.send("+14155550100", "hello", idempotency_key="k")
    assert info.value.permanent is False
    assert info.value.uncertain is False


# Webhooks


@pytest.mark.parametrize(
    "timestamp",
    [
        datetime.now(UTC),
        datetime.now(timezone(timedelta(hours=-5))),  # converted, not relabelled as UTC
    ],
)
async def test_signed_webhook_verifies_with_the_reference(
    receiver: Receiver, timestamp: datetime
) -> None:
    secret = new_secret()
    payload = json.dumps({"type": "invoice.paid.v1", "data": {"invoice": "INV-1"}}).encode()
    sender = WebhookSender(allow_private=True)
    result = await sender.send(
        f"{receiver.url}/hooks/erp", secret, msg_id="msg_1", timestamp=timestamp, payload=payload
    )
    assert result.status_code == 200
    assert result.ok
    assert not result.gone
    assert result.body_excerpt == '{"ok": true}'
    [(path, headers, body)] = receiver.requests
    assert path == "hooks/erp"
    assert body == payload
    assert headers["content-type"] == "application/json"
    assert headers["webhook-id"] == "msg_1"
    assert headers["webhook-timestamp"] == str(int(timestamp.timestamp()))
    assert Webhook(secret).verify(body, headers) == json.loads(payload)
    with pytest.raises(Exception, match="signature"):
        Webhook(new_secret()).verify(body, headers)


async def test_410_means_gone(receiver: Receiver) -> None:
    receiver.status = 410
    sender = WebhookSender(allow_private=True)
    result = await sender.send(
        receiver.url, new_secret(), msg_id="m", timestamp=datetime.now(UTC), payload=b"{}"
    )
    assert result.gone
    assert not result.ok


async def test_a_large_response_is_not_read_whole(receiver: Receiver) -> None:
    receiver.body = {"blob": "x" * 1_000_000}
    sender = WebhookSender(allow_private=True)
    result = await sender.send(
        receiver.url, new_secret(), msg_id="m", timestamp=datetime.now(UTC), payload=b"{}"
    )
    assert result.ok
    assert result.body_excerpt == '{"blob": "' + "x" * 490
    assert receiver.requests[0][1]["accept-encoding"] == "identity"


async def test_redirects_are_not_followed(receiver: Receiver) -> None:
    receiver.status = 307
    receiver.headers = {"location": "http://169.254.169.254/latest/meta-data/"}
    async with httpx.AsyncClient(follow_redirects=True) as http:
        sender = WebhookSender(http, allow_private=True)
        result = await sender.send(
            receiver.url, new_secret(), msg_id="m", timestamp=datetime.now(UTC), payload=b"{}"
        )
    assert result.status_code == 307
    assert len(receiver.requests) == 1


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
async def test_loopback_receiver_is_refused_unless_allowed(receiver: Receiver, host: str) -> None:
    sender = WebhookSender()
    with pytest.raises(TargetRefused, match=f"{host}: resolves to a loopback"):
        await sender.send(
            f"http://{host}:{receiver.port}/",
            new_secret(),
            msg_id="m",
            timestamp=datetime.now(UTC),
            payload=b"{}",
        )
    assert receiver.requests == []


async def test_timeout_is_uncertain_and_refused_connection_is_not(receiver: Receiver) -> None:
    receiver.delay = 1.0
    sender = WebhookSender(timeout=0.2, allow_private=True)
    with pytest.raises(WebhookError) as slow:
        await sender.send(
            receiver.url, new_secret(), msg_id="m", timestamp=datetime.now(UTC), payload=b"{}"
        )
    assert slow.value.uncertain is True
    with pytest.raises(WebhookError) as closed:
        await sender.send(
            f"http://127.0.0.1:{free_port()}/",
            new_secret(),
            msg_id="m",
            timestamp=datetime.now(UTC),
            payload=b"{}",
        )
    assert closed.value.uncertain is False
