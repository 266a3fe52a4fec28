"""scheduled_step: a partial index on the lease of claimed rows

The scheduler's claim looks for due work in two indexed arms: pending rows whose send_at
passed (ix_scheduled_step_due) and claimed rows whose lease expired (this index). With both,
an idle pass reads a few index pages instead of scanning every pending and claimed row.

Revision ID: 0002_step_lease
Revises: 0001_initial
Create Date: 2026-11-23 13:40:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0002_step_lease"
down_revision: str | Sequence[str] | None = "0001_initial"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_scheduled_step_lease",
        "scheduled_step",
        ["lease_until"],
        unique=False,
        postgresql_where=sa.text("status = 'claimed'"),
    )


def downgrade() -> None:
    op.drop_index(
        "ix_scheduled_step_lease",
        table_name="scheduled_step",
        postgresql_where=sa.text("status = 'claimed'"),
    )
