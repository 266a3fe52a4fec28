"""Start the infrastructure and every service, watch them, and stop them all in order.

Order up: PostgreSQL, broker, topics, then per service its database, migrations and
processes (each waited on until ready). Order down: services, broker, PostgreSQL.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.text import Text

from duewise_dev._util import LOCALHOST, port_is_free
from duewise_dev.broker import TansuBroker, ensure_topics
from duewise_dev.children import Child
from duewise_dev.postgres import EmbeddedPostgres, database_url, ensure_database
from duewise_dev.seed import SeedError, Urls, plan_book, print_report, seed
from duewise_dev.services import SERVICES, Process, Service, all_topics

_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
_URL_FIELDS = ("invoice", "dunning", "risk", "notify")
_COLOURS = ("cyan", "magenta", "green", "yellow", "blue", "bright_red")


class StartupError(RuntimeError):
    """Something did not come up; the message says what and shows its last log lines."""


@dataclass
class StackOptions:
    """What to run and where; `from_env` reads the documented environment variables."""

    data_dir: Path
    pg_port: int = 5442
    kafka_port: int = 9092
    database_url: str | None = None  # an existing server instead of the embedded one
    kafka_bootstrap: str | None = None  # an existing broker instead of Tansu
    admin_token: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    admin_token_generated: bool = True
    services: tuple[Service, ...] = SERVICES
    echo: bool = True  # copy children's output, prefixed, to the console
    # Fifteen processes start at once and each spends seconds of CPU importing its stack
    # (FastAPI, SQLAlchemy, OpenTelemetry...): on two busy cores the last API can take well
    # over a minute to answer /readyz. A real failure still says so, with the child's log.
    ready_timeout: float = 180.0
    migrate_timeout: float = 120.0
    # A real SMTP server to send to; without one, a local catcher (mail and SMS) runs.
    smtp_url: str | None = None
    smtp_port: int = 1025
    catcher_port: int = 8025
    demo: bool = False  # seed the demo book and UI users once everything is up

    @classmethod
    def from_env(cls, data_dir: Path, environ: Mapping[str, str] = os.environ) -> StackOptions:
        token = environ.get("DUEWISE_ADMIN_TOKEN")
        return cls(
            data_dir=data_dir,
            pg_port=int(environ.get("DUEWISE_PG_PORT", "5442")),
            kafka_port=int(environ.get("DUEWISE_KAFKA_PORT", "9092")),
            database_url=environ.get("DATABASE_URL") or None,
            kafka_bootstrap=environ.get("KAFKA_BOOTSTRAP_SERVERS") or None,
            admin_token=token or secrets.token_urlsafe(32),
            admin_token_generated=not token,
            smtp_url=environ.get("SMTP_URL") or None,
            smtp_port=int(environ.get("DUEWISE_SMTP_PORT", "1025")),
            catcher_port=int(environ.get("DUEWISE_CATCHER_PORT", "8025")),
        )

    @property
    def catcher(self) -> bool:
        """Whether the local mail and SMS catcher runs (SMTP_URL unset)."""
        return self.smtp_url is None

    @property
    def log_dir(self) -> Path:
        return self.data_dir / "logs"


class Stack:
    """The running system: infrastructure handles and child processes."""

    def __init__(self, options: StackOptions, console: Console) -> None:
        self.options = options
        self.console = console
        self.postgres: EmbeddedPostgres | None = None
        self.broker: TansuBroker | None = None
        self.server_url = options.database_url or ""
        self.bootstrap = options.kafka_bootstrap or ""
        self.children: list[Child] = []
        self._threads: list[asyncio.Future[None]] = []

    async def start_infra(self) -> None:
        """PostgreSQL and the broker (embedded unless given), topics and databases."""
        opts = self.options
        self._check_ports()
        if not opts.database_url:
            self.postgres = EmbeddedPostgres(
                opts.data_dir / "pg", opts.pg_port, durable=True,
                log_path=opts.log_dir / "postgres.log",
            )  # fmt: skip
            await self._in_thread(self.postgres.start)
            self.server_url = self.postgres.url
        if not opts.kafka_bootstrap:
            self.broker = TansuBroker(opts.kafka_port, log_path=opts.log_dir / "tansu.log")
            await self._in_thread(self.broker.start)
            self.bootstrap = self.broker.bootstrap
        await ensure_topics(self.bootstrap, all_topics(opts.services))
        for service in opts.services:
            await ensure_database(self.server_url, service.database)
        if opts.catcher:
            await self._start_catcher()

    async def _start_catcher(self) -> None:
        """The local SMTP and SMS catcher, whose mail the UI (and its own page) shows."""
        opts = self.options
        argv = (
            sys.executable, "-m", "duewise_dev.catcher",
            "--smtp-port", str(opts.smtp_port), "--http-port", str(opts.catcher_port),
        )  # fmt: skip
        child = self._child("catcher", argv, dict(os.environ))
        self.children.append(child)
        await child.start()
        process = Process("catcher", argv, port=opts.catcher_port, ready_path="/healthz")
        async with httpx.AsyncClient(timeout=2.0) as http:
            await self._wait_ready(child, process, http)

    async def start_services(self) -> None:
        """Migrate each service, then start its processes and wait until they are ready.

        Services start side by side (each owns its database and needs nothing from another
        to start), so four services take about as long as the slowest one.
        """
        async with httpx.AsyncClient(timeout=2.0) as http:
            try:
                async with asyncio.TaskGroup() as group:
                    for service in self.options.services:
                        group.create_task(self._start_service(service, http))
            except* StartupError as failures:
                # The first failure says enough; the group already cancelled the rest.
                raise failures.exceptions[0] from None

    async def _start_service(self, service: Service, http: httpx.AsyncClient) -> None:
        env = {**os.environ, **self._service_env(service)}
        await self._migrate(service, env)
        started: list[tuple[Child, Process]] = []
        for process in service.processes:
            child = self._child(process.name, process.argv, env)
            self.children.append(child)  # before start: stop() must know it
            await child.start()
            started.append((child, process))
        try:
            async with asyncio.TaskGroup() as group:
                for child, process in started:
                    group.create_task(self._wait_ready(child, process, http))
        except* StartupError as failures:
            raise failures.exceptions[0] from None

    async def first_exit(self) -> Child:
        """Wait until any service process exits; that process."""
        waits = {asyncio.ensure_future(c.wait()): c for c in self.children}
        try:
            done, _ = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            return waits[next(iter(done))]
        finally:
            for task in waits:
                task.cancel()

    async def stop(self) -> None:
        """Services first (SIGTERM, then SIGKILL), then the broker, then PostgreSQL."""
        # A start cancelled mid-way may still be running in its thread: let it finish so
        # that what it started gets stopped below.
        await asyncio.gather(*self._threads, return_exceptions=True)
        await asyncio.gather(*(c.stop() for c in reversed(self.children)))
        loop = asyncio.get_running_loop()
        if self.broker is not None:
            await loop.run_in_executor(None, self.broker.stop)
        if self.postgres is not None:
            await loop.run_in_executor(None, self.postgres.stop)

    def print_summary(self, *, services: bool = True) -> None:
        opts, out = self.options, self.console
        rel = _relative
        out.print()
        if self.postgres is not None:
            pg = self.postgres
            where = f"data {rel(pg.data_dir)}, log {rel(pg.log_path)}"
            out.print(f"[bold]postgres[/]  {self.server_url}  ({where})")
        else:
            out.print(f"[bold]postgres[/]  {_redact(self.server_url)}  (from DATABASE_URL)")
        if opts.catcher:
            out.print(f"[bold]mail[/]      smtp://{LOCALHOST}:{opts.smtp_port}  (caught; read it "
                      f"at http://{LOCALHOST}:{opts.catcher_port}/)")  # fmt: skip
        else:
            out.print(f"[bold]mail[/]      {_redact(opts.smtp_url or '')}  (from SMTP_URL)")
        if self.broker is not None:
            out.print(f"[bold]kafka[/]     {self.bootstrap}  (Tansu, in memory; "
                      f"log {rel(opts.log_dir / 'tansu.log')})")  # fmt: skip
        else:
            out.print(f"[bold]kafka[/]     {self.bootstrap}  (from KAFKA_BOOTSTRAP_SERVERS)")
        if not services:
            return
        for service in opts.services:
            out.print(f"[bold]{service.name:<9}[/] {service.base_url}  (docs {service.docs_path})")
        out.print(f"logs      {rel(opts.log_dir)}/<name>.log")
        token = opts.admin_token
        example = next((s for s in opts.services if s.example_path), None)
        if opts.admin_token_generated:
            out.print(f"admin token (generated for this run): {token}")
        if example is not None and example.example_path is not None:
            shown = token if opts.admin_token_generated else "$DUEWISE_ADMIN_TOKEN"
            out.print(f'  curl -H "Authorization: Bearer {shown}" '
                      f"{example.base_url}{example.example_path}")  # fmt: skip
        out.print("[dim]Ctrl-C stops everything.[/]")

    async def seed_demo(self) -> None:
        """Write the demo book and the UI users into the running stack (`duewise-dev seed`)."""
        opts, out = self.options, self.console
        urls = Urls(**{s.name: s.base_url for s in opts.services if s.name in _URL_FIELDS})
        out.print("[bold]seeding the demo book[/] (a few minutes; the UI fills as it goes)")
        try:
            report = await seed(
                urls=urls,
                admin_token=opts.admin_token,
                book=plan_book(),
                notify_db_url=database_url(self.server_url, "duewise_notify"),
                progress=lambda line: out.print(f"[dim]{line}[/]"),
            )
        except (SeedError, httpx.HTTPError) as exc:
            out.print(f"[bold red]demo seed failed:[/] {exc}", highlight=False)
            return
        print_report(out, report, urls.notify)

    def _check_ports(self) -> None:
        """Fail fast, before starting anything, if a port we need is taken."""
        opts = self.options
        wanted = [(s.name, s.port) for s in opts.services]
        if not opts.database_url:
            wanted.append(("postgres (DUEWISE_PG_PORT)", opts.pg_port))
        if not opts.kafka_bootstrap:
            wanted.append(("kafka (DUEWISE_KAFKA_PORT)", opts.kafka_port))
        if opts.catcher:
            wanted.append(("mail catcher SMTP (DUEWISE_SMTP_PORT)", opts.smtp_port))
            wanted.append(("mail catcher HTTP (DUEWISE_CATCHER_PORT)", opts.catcher_port))
        taken = [f"{name} {port}" for name, port in wanted if not port_is_free(port)]
        if taken:
            raise StartupError(
                f"port(s) already in use on {LOCALHOST}: {', '.join(taken)}; is another "
                "duewise-dev (or a leftover process of one) still running?"
            )

    def _service_env(self, service: Service) -> dict[str, str]:
        opts = self.options
        env = service.env(
            server_url=self.server_url,
            kafka_bootstrap=self.bootstrap,
            admin_token=opts.admin_token,
        )
        if opts.catcher:
            env["SMTP_URL"] = f"smtp://{LOCALHOST}:{opts.smtp_port}"
            env["SMS_URL"] = f"http://{LOCALHOST}:{opts.catcher_port}"
            env["CATCHER_URL"] = f"http://{LOCALHOST}:{opts.catcher_port}"  # the UI's mail page
        return env

    def _child(self, name: str, argv: tuple[str, ...], env: Mapping[str, str]) -> Child:
        colour = _COLOURS[len(self.children) % len(_COLOURS)]
        echo = self._echo_with(colour) if self.options.echo else None
        return Child(name, argv, env=env, log_path=self.options.log_dir / f"{name}.log", echo=echo)

    def _echo_with(self, colour: str) -> Callable[[str, str], None]:
        def echo(name: str, line: str) -> None:
            # Text, not markup: a log line may contain [brackets].
            self.console.print(Text.assemble((f"{name:>14} | ", colour), line), highlight=False)

        return echo

    async def _migrate(self, service: Service, env: Mapping[str, str]) -> None:
        child = self._child(f"{service.name}-migrate", service.migrate, env)
        await child.start()
        try:
            code = await asyncio.wait_for(child.wait(), self.options.migrate_timeout)
        except TimeoutError:
            await child.stop()
            raise StartupError(_failure(child, "did not finish in time")) from None
        except asyncio.CancelledError:  # Ctrl-C mid-migration: do not leave it running
            await child.stop()
            raise
        if code != 0:
            raise StartupError(_failure(child, f"exited with code {code}"))

    async def _wait_ready(self, child: Child, process: Process, http: httpx.AsyncClient) -> None:
        deadline = asyncio.get_running_loop().time() + self.options.ready_timeout
        if process.port is None:
            await asyncio.sleep(process.settle_s)
        while child.returncode is None:
            if process.port is None:
                return
            url = f"http://{LOCALHOST}:{process.port}{process.ready_path}"
            with contextlib.suppress(httpx.HTTPError):
                if (await http.get(url)).status_code == 200:
                    return
            if asyncio.get_running_loop().time() > deadline:
                raise StartupError(_failure(child, f"not ready at {url} in time"))
            await asyncio.sleep(0.2)
        await child.wait()  # so that its last lines are copied
        raise StartupError(_failure(child, f"exited with code {child.returncode} while starting"))

    async def _in_thread(self, fn: Callable[[], None]) -> None:
        """Run a blocking start in a thread; cancelling us does not abandon what it starts."""
        future = asyncio.get_running_loop().run_in_executor(None, fn)
        self._threads.append(future)
        await asyncio.shield(future)


async def run_stack(
    options: StackOptions,
    console: Console,
    *,
    services: bool = True,
    on_ready: Callable[[str, str], None] | None = None,
) -> int:
    """Run until Ctrl-C/SIGTERM (exit 0), a failed start or a dead child (exit 1).

    `on_ready(database_server_url, kafka_bootstrap)` is called once everything is up.
    """
    loop = asyncio.get_running_loop()
    stop_requested = asyncio.Event()
    for sig in _STOP_SIGNALS:
        loop.add_signal_handler(sig, stop_requested.set)
    stack = Stack(options, console)
    stopper = asyncio.ensure_future(stop_requested.wait())
    tasks: list[asyncio.Future[Any]] = [stopper]
    try:
        startup = asyncio.ensure_future(_start(stack, services))
        tasks.append(startup)
        await asyncio.wait({startup, stopper}, return_when=asyncio.FIRST_COMPLETED)
        if not startup.done():
            console.print("[yellow]interrupted while starting; stopping[/]")
            return 0
        if (error := startup.exception()) is not None:
            console.print(f"[bold red]startup failed:[/] {error}", highlight=False)
            return 1
        stack.print_summary(services=services)
        if on_ready is not None:
            on_ready(stack.server_url, stack.bootstrap)
        if options.demo and services:  # in the background: the children are watched meanwhile
            tasks.append(asyncio.ensure_future(stack.seed_demo()))
        if not stack.children:  # infra only: nothing to watch but the signal
            await stopper
            return 0
        died = asyncio.ensure_future(stack.first_exit())
        tasks.append(died)
        await asyncio.wait({died, stopper}, return_when=asyncio.FIRST_COMPLETED)
        if stopper.done():
            return 0
        child = died.result()
        console.print(
            f"[bold red]{child.name} exited unexpectedly[/] (code {child.returncode}); "
            f"stopping everything. Last lines:\n{child.recent_output()}\n"
            f"(full log: {_relative(child.log_path)})",
            highlight=False,
        )
        return 1
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        console.print("[dim]stopping…[/]")
        await stack.stop()
        for sig in _STOP_SIGNALS:
            loop.remove_signal_handler(sig)
        console.print("[dim]stopped.[/]")


async def _start(stack: Stack, services: bool) -> None:
    await stack.start_infra()
    if services:
        await stack.start_services()


def _failure(child: Child, what: str) -> str:
    return (
        f"{child.name} {what}. Last lines:\n{child.recent_output()}\n"
        f"(full log: {_relative(child.log_path)})"
    )


def _relative(path: Path) -> str:
    with contextlib.suppress(ValueError):
        return str(path.absolute().relative_to(Path.cwd()))
    return str(path)


def _redact(url: str) -> str:
    """The URL without its password, for printing."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return parts._replace(netloc=netloc).geturl()


__all__ = ["Stack", "StackOptions", "StartupError", "run_stack"]
