"""scheduled_step.traceparent: the trace of the event that planned the step

The scheduler emits a step long after the consumer planned it; the stored W3C traceparent
lets the ReminderDue it stages continue the invoice's trace (API -> relay -> dunning ->
reminder -> notify -> SMTP) instead of starting a new one.

Revision ID: 0005_step_trace
Revises: 0004_audit_log
Create Date: 2026-12-02 02:30:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0005_step_trace"
down_revision: str | Sequence[str] | None = "0004_audit_log"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("scheduled_step", sa.Column("traceparent", sa.Text(), nullable=True))


def downgrade() -> None:
    op.drop_column("scheduled_step", "traceparent")
