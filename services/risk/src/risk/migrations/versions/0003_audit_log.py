"""audit.audit_log: the append-only record of every change to risk's rows

See duewise_service.audit: the log lives in its own schema, a trigger refuses UPDATE,
DELETE and TRUNCATE on it, and every table below records its row changes into it.

Revision ID: 0003_audit_log
Revises: 0002_worklist_row
Create Date: 2026-12-02 03:00:00

"""

from collections.abc import Sequence

from alembic import op
from duewise_service.audit import MACHINERY_TABLES, attach_all, create_audit_log, drop_audit_log

revision: str = "0003_audit_log"
down_revision: str | Sequence[str] | None = "0002_worklist_row"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: Risk derives everything it stores from events (profiles, movements, signals, the
#: worklist): a replay rebuilds it, so only its own configuration (api_token) is audited.
NOT_AUDITED = (
    *MACHINERY_TABLES,
    "ar_movement",
    "customer_profile",
    "reminder_log",
    "risk_signal",
    "worklist_row",
)


def upgrade() -> None:
    create_audit_log(op)
    attach_all(op, exclude=NOT_AUDITED)


def downgrade() -> None:
    drop_audit_log(op)
