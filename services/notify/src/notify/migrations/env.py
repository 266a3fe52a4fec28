"""Alembic environment of the notify service (see duewise_service.migrations.run_env)."""

from duewise_service.migrations import run_env

import notify.models as models
import notify.ui.tables  # noqa: F401  (the collector UI's tables, on the same metadata)

#: Serialises concurrent `migrate` runs (several replicas starting at once).
MIGRATION_LOCK_KEY = 0x0D0E_4002

run_env(models.metadata, lock_key=MIGRATION_LOCK_KEY)
