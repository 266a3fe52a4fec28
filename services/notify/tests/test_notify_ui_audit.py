"""Migration 0005: the UI's audit rows say what they were about (a customer or a policy);
the policy edits stored before it as customer_id "policy:<id>" are moved over."""

from __future__ import annotations

import asyncio

import asyncpg
from duewise_dev.postgres import scratch_database
from notify.migrations import upgrade


def _upgrade_to_0004(url: str) -> None:
    upgrade(url, "0004_message_trace")


async def test_old_audit_rows_get_their_subject(pg_server_url: str) -> None:
    async with scratch_database(pg_server_url, "duewise_notify_audit", _upgrade_to_0004) as url:
        conn = await asyncpg.connect(url)
        try:
            for id_, subject in (("act_1", "cus_1"), ("act_2", "policy:pol_9")):
                await conn.execute(
                    "INSERT INTO ui_action (id, user_name, customer_id, kind, service, request,"
                    " status) VALUES ($1, 'ada', $2, 'x', 'dunning', '{}', 200)",
                    id_,
                    subject,
                )
        finally:
            await conn.close()
        await asyncio.to_thread(upgrade, url)
        conn = await asyncpg.connect(url)
        try:
            rows = await conn.fetch(
                "SELECT id, subject_kind, subject_id, customer_id FROM ui_action ORDER BY id"
            )
            assert [tuple(r) for r in rows] == [
                ("act_1", "customer", "cus_1", "cus_1"),
                ("act_2", "policy", "pol_9", None),
            ]
        finally:
            await conn.close()
