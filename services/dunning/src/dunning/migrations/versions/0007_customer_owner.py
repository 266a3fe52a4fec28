"""customer.owner: the collector whose portfolio the customer is in (from customer events)

Dunning's API checks it for collectors' tokens (dunning.portfolio). Nullable: customers
projected before this revision get their owner with their next customer.updated, and a
customer without an owner is in no collector's portfolio.

Revision ID: 0007_customer_owner
Revises: 0006_token_subject
Create Date: 2026-12-02 13:20:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007_customer_owner"
down_revision: str | Sequence[str] | None = "0006_token_subject"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("customer", sa.Column("owner", sa.Text(), nullable=True))


def downgrade() -> None:
    op.drop_column("customer", "owner")
