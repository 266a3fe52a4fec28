"""message.traceparent: the trace of the event that caused the message

The sender sends a message after the consumer recorded it; the stored W3C traceparent makes
the send and its SMTP/SMS/webhook call part of the cause's trace (one trace per invoice).

Revision ID: 0004_message_trace
Revises: 0003_audit_log
Create Date: 2026-12-02 02:30:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0004_message_trace"
down_revision: str | Sequence[str] | None = "0003_audit_log"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("message", sa.Column("traceparent", sa.Text(), nullable=True))


def downgrade() -> None:
    op.drop_column("message", "traceparent")
