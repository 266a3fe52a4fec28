"""customer.owner: the collector who works the account

Alerts about the account (a bounce, a credit hold, a warning sign) go to its owner, and the
collector UI shows each collector their own portfolio.

Revision ID: 0002_customer_owner
Revises: 0001_initial
Create Date: 2026-11-23 15:00:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002_customer_owner"
down_revision: str | Sequence[str] | None = "0001_initial"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Nullable, no default: adding it is a catalogue-only change, no table rewrite.
    op.add_column("customer", sa.Column("owner", sa.Text(), nullable=True))
    op.create_index("ix_customer_owner", "customer", ["owner"])


def downgrade() -> None:
    op.drop_index("ix_customer_owner", table_name="customer")
    op.drop_column("customer", "owner")
