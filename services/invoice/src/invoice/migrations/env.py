"""Alembic environment of the invoice service (see duewise_service.migrations.run_env)."""

from duewise_service.migrations import run_env

import invoice.models as models

#: Serialises concurrent `migrate` runs (several replicas starting at once).
MIGRATION_LOCK_KEY = 0x0D0E_1002

run_env(models.SQLModel.metadata, lock_key=MIGRATION_LOCK_KEY)
