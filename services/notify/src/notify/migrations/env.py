"""Alembic environment of the notify service (see duewise_service.migrations.run_env)."""

from duewise_service.migrations import run_env

import notify.models as models

#: Serialises concurrent `migrate` runs (several replicas starting at once).
MIGRATION_LOCK_KEY = 0x0D0E_4002

run_env(models.metadata, lock_key=MIGRATION_LOCK_KEY)
