"""ui_action.subject_kind and subject_id: what a UI action was about, a customer or a policy

Policy edits were stored with customer_id "policy:<id>"; they now say subject_kind "policy"
with the policy's id, and customer_id is null for them. Existing rows are moved over.

Revision ID: 0005_ui_action_subject
Revises: 0004_message_trace
Create Date: 2026-12-02 02:42:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005_ui_action_subject"
down_revision: str | Sequence[str] | None = "0004_message_trace"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "ui_action",
        sa.Column("subject_kind", sa.Text(), server_default="customer", nullable=False),
    )
    op.add_column("ui_action", sa.Column("subject_id", sa.Text(), nullable=True))
    op.alter_column("ui_action", "customer_id", existing_type=sa.Text(), nullable=True)
    op.execute(
        "UPDATE ui_action SET subject_kind = 'policy', "
        "subject_id = substr(customer_id, length('policy:') + 1), customer_id = NULL "
        "WHERE customer_id LIKE 'policy:%'"
    )
    op.execute("UPDATE ui_action SET subject_id = customer_id WHERE subject_id IS NULL")
    op.alter_column("ui_action", "subject_id", existing_type=sa.Text(), nullable=False)
    op.create_check_constraint(
        op.f("ck_ui_action_subject_kind"), "ui_action", "subject_kind IN ('customer', 'policy')"
    )
    op.create_index("ix_ui_action_subject", "ui_action", ["subject_kind", "subject_id"])


def downgrade() -> None:
    op.drop_index("ix_ui_action_subject", table_name="ui_action")
    op.drop_constraint(op.f("ck_ui_action_subject_kind"), "ui_action", type_="check")
    op.execute(
        "UPDATE ui_action SET customer_id = 'policy:' || subject_id WHERE subject_kind = 'policy'"
    )
    op.alter_column("ui_action", "customer_id", existing_type=sa.Text(), nullable=False)
    op.drop_column("ui_action", "subject_id")
    op.drop_column("ui_action", "subject_kind")
