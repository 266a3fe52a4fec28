"""Fresh, migrated invoice, dunning, notify and risk databases for the observability tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from duewise_dev.postgres import scratch_database


@pytest.fixture(scope="session")
async def obs_dbs(pg_server_url: str) -> AsyncIterator[dict[str, str]]:
    from dunning.migrations import upgrade as upgrade_dunning
    from invoice.migrations import upgrade as upgrade_invoice
    from notify.migrations import upgrade as upgrade_notify
    from risk.migrations import upgrade as upgrade_risk

    async with (
        scratch_database(pg_server_url, "duewise_obs_invoice", upgrade_invoice) as invoice,
        scratch_database(pg_server_url, "duewise_obs_dunning", upgrade_dunning) as dunning,
        scratch_database(pg_server_url, "duewise_obs_notify", upgrade_notify) as notify,
        scratch_database(pg_server_url, "duewise_obs_risk", upgrade_risk) as risk,
    ):
        yield {"invoice": invoice, "dunning": dunning, "notify": notify, "risk": risk}
