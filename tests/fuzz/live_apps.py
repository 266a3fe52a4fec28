"""The four services' real apps on their own scratch databases, served by uvicorn on loopback
ports from an event loop in a background thread, so that sync callers (schemathesis and
Hypothesis drive requests synchronously) can call them and look at their databases.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import threading
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

import uvicorn
from duewise_dev._util import free_port
from duewise_dev.postgres import scratch_database
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

T = TypeVar("T")
ADMIN_TOKEN = "fuzz-admin-" + secrets.token_hex(16)
SERVICES = ("invoice", "dunning", "risk", "notify")


class LoopThread:
    """An event loop running in a daemon thread; `run` waits for a coroutine on it."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 120) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@dataclass
class Live:
    app: FastAPI
    url: str
    server: uvicorn.Server
    task: asyncio.Task[None]

    @property
    def engine(self) -> AsyncEngine:
        e: AsyncEngine = self.app.state.engine
        return e


@dataclass
class LiveApps:
    loop: LoopThread
    apps: dict[str, Live] = field(default_factory=dict)
    stack: contextlib.AsyncExitStack = field(default_factory=contextlib.AsyncExitStack)

    def snapshot(self, service: str) -> dict[str, tuple[int, int]]:
        """Every table's row count and content hash (public and audit schemas)."""
        return self.loop.run(_snapshot(self.apps[service].engine))


async def _snapshot(engine: AsyncEngine) -> dict[str, tuple[int, int]]:
    async with engine.connect() as conn:
        names = (
            await conn.execute(
                text(
                    "SELECT schemaname || '.' || tablename FROM pg_tables "
                    "WHERE schemaname IN ('public', 'audit') ORDER BY 1"
                )
            )
        ).scalars()
        parts = [
            f"SELECT '{n}', count(*), coalesce(sum(hashtext(t::text)::bigint), 0) FROM {n} t"
            for n in names
        ]
        rows = (await conn.execute(text(" UNION ALL ".join(parts)))).all()
    return {str(r[0]): (int(r[1]), int(r[2])) for r in rows}


async def _serve(app: FastAPI) -> Live:
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error", lifespan="on")
    )
    task = asyncio.create_task(server.serve())
    for _ in range(1000):
        if server.started:
            return Live(app, f"http://127.0.0.1:{port}", server, task)
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    raise RuntimeError("uvicorn did not start within 10 s")


async def _start(live: LiveApps, pg_server_url: str, kafka_bootstrap: str) -> None:
    from dunning.config import Settings as DunningSettings
    from dunning.main import create_app as create_dunning
    from dunning.migrations import upgrade as upgrade_dunning
    from invoice.config import Settings as InvoiceSettings
    from invoice.main import create_app as create_invoice
    from invoice.migrations import upgrade as upgrade_invoice
    from notify.config import Settings as NotifySettings
    from notify.main import create_app as create_notify
    from notify.migrations import upgrade as upgrade_notify
    from risk.config import Settings as RiskSettings
    from risk.main import create_app as create_risk
    from risk.migrations import upgrade as upgrade_risk

    async def db(prefix: str, upgrade: Any) -> str:
        url: str = await live.stack.enter_async_context(
            scratch_database(pg_server_url, prefix, upgrade)
        )
        return url

    invoice_db = await db("duewise_invoice_fuzz", upgrade_invoice)
    dunning_db = await db("duewise_dunning_fuzz", upgrade_dunning)
    risk_db = await db("duewise_risk_fuzz", upgrade_risk)
    notify_db = await db("duewise_notify_fuzz", upgrade_notify)
    live.apps["invoice"] = await _serve(
        create_invoice(
            InvoiceSettings(
                database_url=invoice_db,
                admin_token=ADMIN_TOKEN,
                kafka_bootstrap_servers=kafka_bootstrap,
            )
        )
    )
    live.apps["dunning"] = await _serve(
        create_dunning(DunningSettings(database_url=dunning_db, admin_token=ADMIN_TOKEN))
    )
    live.apps["risk"] = await _serve(
        create_risk(RiskSettings(database_url=risk_db, admin_token=ADMIN_TOKEN))
    )
    live.apps["notify"] = await _serve(
        create_notify(
            NotifySettings(
                database_url=notify_db,
                admin_token=ADMIN_TOKEN,
                kafka_bootstrap_servers=kafka_bootstrap,
                invoice_api_url=live.apps["invoice"].url,
                public_url="http://notify.test",
            )
        )
    )


async def _stop(live: LiveApps) -> None:
    for served in reversed(list(live.apps.values())):
        served.server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(served.task, 10)
    await live.stack.aclose()


@contextlib.contextmanager
def live_apps(pg_server_url: str, kafka_bootstrap: str) -> Iterator[LiveApps]:
    loop = LoopThread()
    live = LiveApps(loop)
    try:
        loop.run(_start(live, pg_server_url, kafka_bootstrap), timeout=300)
        yield live
    finally:
        try:
            loop.run(_stop(live), timeout=60)
        finally:
            loop.close()
