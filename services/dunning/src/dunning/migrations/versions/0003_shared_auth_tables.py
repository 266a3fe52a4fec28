"""api_token gets scopes, idempotency_record gets method and path (duewise_service's tables)

Tokens without scopes keep their role's scopes, so existing tokens work as before. Records
written before this revision get an empty method and path (they are purged within a day).

Revision ID: 0003_shared_auth
Revises: 0002_step_lease
Create Date: 2026-11-23 15:10:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

# revision identifiers, used by Alembic.
revision: str = "0003_shared_auth"
down_revision: str | Sequence[str] | None = "0002_step_lease"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "api_token",
        sa.Column(
            "scopes",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default="[]",
            nullable=False,
        ),
    )
    for column in ("method", "path"):
        op.add_column(
            "idempotency_record",
            sa.Column(column, sa.String(), server_default="", nullable=False),
        )
        op.alter_column("idempotency_record", column, server_default=None)


def downgrade() -> None:
    op.drop_column("idempotency_record", "path")
    op.drop_column("idempotency_record", "method")
    op.drop_column("api_token", "scopes")
