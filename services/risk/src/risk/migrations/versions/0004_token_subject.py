"""api_token.subject: the person a token acts for (a collector's user name)

A collector's token is bound to its portfolio by it (see duewise_service.auth). Nullable,
no default: a catalogue-only change; tokens for systems keep none.

Revision ID: 0004_token_subject
Revises: 0003_audit_log
Create Date: 2026-12-02 03:30:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004_token_subject"
down_revision: str | Sequence[str] | None = "0003_audit_log"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("api_token", sa.Column("subject", sa.Text(), nullable=True))


def downgrade() -> None:
    op.drop_column("api_token", "subject")
