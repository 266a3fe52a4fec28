"""The embedded PostgreSQL: starts, takes TCP connections, keeps its data, recovers a stale pid."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import asyncpg
import pytest
from duewise_dev.postgres import EmbeddedPostgres, PostgresError, database_url, ensure_database
from duewise_dev.pytest_plugin import free_port


async def _fetch(url: str, query: str) -> object:
    conn = await asyncpg.connect(url)
    try:
        return await conn.fetchval(query)
    finally:
        await conn.close()


async def test_data_survives_a_restart_and_a_stale_pid_file(tmp_path: Path) -> None:
    pg = EmbeddedPostgres(tmp_path / "pg", free_port(), durable=False)
    pg.start()
    try:
        assert "127.0.0.1" in pg.url
        conn = await asyncpg.connect(pg.url)
        await conn.execute("CREATE TABLE kept (v text); INSERT INTO kept VALUES ('hello')")
        await conn.close()
    finally:
        pg.stop()

    # A server killed hard leaves its postmaster.pid; its pid may be gone or reused.
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    for pid in (dead.stdout.strip(), str(os.getpid())):
        (tmp_path / "pg" / "postmaster.pid").write_text(f"{pid}\n{tmp_path / 'pg'}\n")
        pg.start()
        try:
            assert await _fetch(pg.url, "SELECT v FROM kept") == "hello"
        finally:
            pg.stop()


def test_refuses_a_port_in_use(tmp_path: Path, pg_server_url: str) -> None:
    port = int(pg_server_url.rsplit(":", 1)[1].split("/", 1)[0])
    with pytest.raises(PostgresError, match="already in use"):
        EmbeddedPostgres(tmp_path / "pg", port, durable=False).start()


async def test_ensure_database_is_idempotent(pg_server_url: str) -> None:
    name = f"duewise_test_{uuid.uuid4().hex[:8]}"
    await ensure_database(pg_server_url, name)
    await ensure_database(pg_server_url, name)
    url = database_url(pg_server_url, name)
    assert await _fetch(url, "SELECT current_database()") == name


def test_database_url_replaces_only_the_database() -> None:
    url = "postgresql://u:p@db.example:6543/postgres?sslmode=require"
    assert database_url(url, "duewise_invoice") == (
        "postgresql://u:p@db.example:6543/duewise_invoice?sslmode=require"
    )
    assert database_url("postgresql://h:1", "x") == "postgresql://h:1/x"
