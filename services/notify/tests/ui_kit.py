"""The collector UI's test stack: the real invoice, dunning, risk and notify apps, each on its
own scratch database and served by uvicorn on a free port, seeded over their HTTP APIs.

Dunning and risk hear the invoice facts the way their consumers would (the handlers applied
to the invoice outbox's rows, in order), without a broker. Test modules import the fixtures:

    from ui_kit import UiStack, ui_stack  # noqa: F401  (the fixture)
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from duewise_dev._util import free_port
from duewise_dev.catcher import Catcher
from duewise_dev.postgres import scratch_database
from duewise_events.envelope import Envelope
from fastapi import FastAPI
from notify.config import Settings
from notify.main import create_app
from notify.migrations import upgrade
from notify.ui import UiSettings, install_ui
from notify.ui.users import create_user
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

ADMIN_TOKEN = "test-ui-admin-" + secrets.token_hex(16)
PASSWORD = "correct horse battery"
REPO_ROOT = Path(__file__).resolve().parents[3]
ARTIFACTS = REPO_ROOT / "test-artifacts" / "ui"


@dataclass
class Served:
    app: FastAPI
    url: str
    server: uvicorn.Server
    task: asyncio.Task[None]

    @property
    def engine(self) -> AsyncEngine:
        e: AsyncEngine = self.app.state.engine
        return e


async def serve(app: FastAPI) -> Served:
    """`app` under uvicorn on a free loopback port, in this event loop; returns once it listens."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    task = asyncio.create_task(server.serve())
    for _ in range(500):
        if server.started:
            break
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    else:
        raise RuntimeError("uvicorn did not start within 5 s")
    return Served(app, f"http://127.0.0.1:{port}", server, task)


async def stop(served: Served) -> None:
    served.server.should_exit = True
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.wait_for(served.task, 10)


@dataclass
class UiStack:
    invoice: Served
    dunning: Served
    risk: Served
    notify: Served
    settings: Settings
    ui: UiSettings
    catcher: Catcher | None = None
    customers: dict[str, dict[str, Any]] = field(default_factory=dict)
    invoices: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: The last outbox row applied, per producing service.
    outbox_seen: dict[str, int] = field(default_factory=dict)
    feeding: asyncio.Lock = field(default_factory=asyncio.Lock)

    def admin(self, served: Served) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=served.url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=10
        )

    async def create_user(
        self, user_name: str, role: str = "collector", password: str = PASSWORD
    ) -> None:
        async with (
            httpx.AsyncClient(timeout=10) as http,
            self.notify.app.state.sessionmaker() as session,
            session.begin(),
        ):
            await create_user(
                session=session,
                http=http,
                urls={
                    "invoice": self.invoice.url,
                    "dunning": self.dunning.url,
                    "risk": self.risk.url,
                },
                admin_tokens=dict.fromkeys(("invoice", "dunning", "risk"), ADMIN_TOKEN),
                secret=self.settings.secret_key.get_secret_value(),
                user_name=user_name,
                role=role,
                password=password,
                display_name=user_name.title(),
            )

    async def feed_events(self) -> None:
        """Apply the outboxes' new rows as the consumers would, in order: invoice facts to
        notify, dunning and risk (notify stages the invoice deliveries; no sender runs, so they
        stay pending); dunning's and notify's events to risk (stages, holds, promises kept or
        broken, responses), so that the worklist sees what the services did."""
        from dunning.handlers import APPLY
        from dunning.handlers import apply as dunning_apply
        from notify.handlers import handle as notify_handle
        from risk.domain.fold import CONSUMED
        from risk.domain.thresholds import DEFAULT
        from risk.service.live import apply_event

        async with self.feeding:
            for source in ("invoice", "dunning", "notify"):
                served: Served = getattr(self, source)
                async with served.engine.connect() as conn:
                    rows = (
                        await conn.execute(
                            text(
                                "SELECT id, event_id, type, key, time, payload FROM outbox "
                                "WHERE id > :after ORDER BY id"
                            ),
                            {"after": self.outbox_seen.get(source, 0)},
                        )
                    ).all()
                for r in rows:
                    self.outbox_seen[source] = r.id
                    envelope = Envelope(
                        id=r.event_id,
                        source=f"duewise/{source}",
                        type=r.type,
                        time=r.time,
                        key=r.key,
                        data=r.payload,
                    )
                    event = envelope.event()
                    if source == "invoice":
                        async with self.notify.app.state.sessionmaker() as s, s.begin():
                            await notify_handle(s, event, envelope)
                        if type(event) in APPLY:
                            async with self.dunning.app.state.sessionmaker() as s, s.begin():
                                await dunning_apply(s, event, r.event_id)
                    if type(event) in CONSUMED:
                        async with self.risk.app.state.sessionmaker() as s, s.begin():
                            await apply_event(s, event, r.event_id, DEFAULT)


@contextlib.asynccontextmanager
async def frozen_service() -> AsyncIterator[str]:
    """The URL of a service that is up but does not answer: it accepts connections and reads
    requests, and never writes a byte (what a saturated or SIGSTOPped process looks like to a
    client whose connection the kernel accepted)."""
    held: list[asyncio.StreamWriter] = []

    async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)
        with contextlib.suppress(ConnectionError):
            while await reader.read(65536):
                pass

    server = await asyncio.start_server(swallow, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.close()
        for writer in held:
            writer.close()
        await server.wait_closed()


@contextlib.asynccontextmanager
async def ui_against(
    stack: UiStack, *, invoice: str | None = None, dunning: str | None = None
) -> AsyncIterator[httpx.AsyncClient]:
    """A client of a second notify app on the stack's database whose UI calls `invoice` and
    `dunning` at the URLs given instead of the stack's (the rest as in the stack)."""
    settings = stack.settings.model_copy(
        update={"invoice_api_url": invoice or stack.settings.invoice_api_url}
    )
    ui = stack.ui.model_copy(update={"dunning_api_url": dunning or stack.ui.dunning_api_url})
    app = create_app(settings)
    install_ui(app, settings, ui)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://ui", timeout=30
        ) as client,
    ):
        yield client


def catch_mail(
    stack: UiStack, to: str, subject: str, html: str, attachment: bytes | None = None
) -> int:
    """Put an email into the stack's catcher as if notify's sender had sent it; its id."""
    from email.message import EmailMessage

    assert stack.catcher is not None
    msg = EmailMessage()
    msg["From"] = "Duewise Billing <billing@duewise.test>"
    msg["To"] = to
    msg["Subject"] = subject
    msg.set_content("Plain text of " + subject)
    msg.add_alternative(html, subtype="html")
    if attachment is not None:
        msg.add_attachment(
            attachment, maintype="application", subtype="pdf", filename="invoice A-1001.pdf"
        )
    return stack.catcher.store.add_mail("billing@duewise.test", [to], msg.as_bytes()).id


def _days(n: int) -> str:
    return (dt.datetime.now(dt.UTC).date() + dt.timedelta(days=n)).isoformat()


async def seed(stack: UiStack) -> None:
    """Carol's customer (two open invoices, one overdue, and one paid by ACH), Bob's customer,
    and the users carol, bob (collectors) and ada (admin)."""
    async with stack.admin(stack.invoice) as inv:

        async def post(path: str, body: dict[str, Any]) -> dict[str, Any]:
            r = await inv.post(path, json=body, headers={"Idempotency-Key": secrets.token_hex(8)})
            assert r.status_code == 201, r.text
            doc: dict[str, Any] = r.json()
            return doc

        for key, name, owner in (
            ("acme", "Acme Tools GmbH", "carol"),
            ("bobco", "Bobco Ltd", "bob"),
        ):
            stack.customers[key] = await post(
                "/v1/customers",
                {
                    "name": name,
                    "currency": "USD",
                    "country": "US",
                    "timezone": "America/New_York",
                    "owner": owner,
                    "contacts": [
                        {"name": "Pat Payables", "email": f"ap@{key}.example", "role": "billing"},
                        {"name": "Chris Chief", "email": f"ceo@{key}.example", "role": "primary"},
                    ],
                },
            )
        acme, bobco = stack.customers["acme"]["id"], stack.customers["bobco"]["id"]
        for key, customer, number, issued, due, total in (
            ("acme-overdue", acme, "A-1001", -45, -15, 1_250_00),
            ("acme-current", acme, "A-1002", -5, 25, 480_00),
            ("acme-paid", acme, "A-1000", -40, -10, 300_00),
            ("bobco-1", bobco, "B-2001", -50, -20, 9_999_00),
        ):
            stack.invoices[key] = await post(
                "/v1/invoices",
                {
                    "customer_id": customer,
                    "number": number,
                    "issue_date": _days(issued),
                    "due_date": _days(due),
                    "currency": "USD",
                    "total": total,
                },
            )
        await post(
            "/v1/payments",
            {
                "customer_id": acme,
                "amount": 300_00,
                "currency": "USD",
                "method": "ach",
                "received_at": _days(-12),
                "reference": "ACH 55512",
                "allocations": [
                    {"invoice_id": stack.invoices["acme-paid"]["id"], "amount": 300_00}
                ],
            },
        )
    await stack.feed_events()
    for user, role in (("carol", "collector"), ("bob", "collector"), ("ada", "admin")):
        await stack.create_user(user, role)


@contextlib.asynccontextmanager
async def running_stack(pg_server_url: str, tag: str) -> AsyncIterator[UiStack]:
    """The four services under uvicorn on scratch databases named with `tag`, unseeded."""
    from dunning.config import Settings as DunningSettings
    from dunning.main import create_app as create_dunning
    from dunning.migrations import upgrade as upgrade_dunning
    from invoice.config import Settings as InvoiceSettings
    from invoice.main import create_app as create_invoice
    from invoice.migrations import upgrade as upgrade_invoice
    from risk.config import Settings as RiskSettings
    from risk.main import create_app as create_risk
    from risk.migrations import upgrade as upgrade_risk

    async with (
        scratch_database(pg_server_url, f"duewise_invoice_{tag}", upgrade_invoice) as invoice_db,
        scratch_database(pg_server_url, f"duewise_dunning_{tag}", upgrade_dunning) as dunning_db,
        scratch_database(pg_server_url, f"duewise_risk_{tag}", upgrade_risk) as risk_db,
        scratch_database(pg_server_url, f"duewise_notify_{tag}", upgrade) as notify_db,
    ):
        invoice = await serve(
            create_invoice(InvoiceSettings(database_url=invoice_db, admin_token=ADMIN_TOKEN))
        )
        dunning = await serve(
            create_dunning(DunningSettings(database_url=dunning_db, admin_token=ADMIN_TOKEN))
        )
        risk = await serve(create_risk(RiskSettings(database_url=risk_db, admin_token=ADMIN_TOKEN)))
        settings = Settings(
            database_url=notify_db,
            admin_token=ADMIN_TOKEN,
            invoice_api_url=invoice.url,
            public_url="http://notify.test",
        )
        catcher = Catcher(smtp_port=0, http_port=0)
        await catcher.start()
        ui = UiSettings(
            dunning_api_url=dunning.url, risk_api_url=risk.url, catcher_url=catcher.http_url
        )
        app = create_app(settings)
        install_ui(app, settings, ui)
        notify = await serve(app)
        try:
            yield UiStack(invoice, dunning, risk, notify, settings, ui, catcher)
        finally:
            for served in (notify, risk, dunning, invoice):
                await stop(served)
            await catcher.stop()


@pytest.fixture(scope="session")
async def ui_stack(pg_server_url: str) -> AsyncIterator[UiStack]:
    """The four services under uvicorn, seeded (see `seed`)."""
    async with running_stack(pg_server_url, "ui") as stack:
        await seed(stack)
        yield stack
