"""audit.audit_log: the append-only record of every change to notify's rows

See duewise_service.audit: the log lives in its own schema, a trigger refuses UPDATE,
DELETE and TRUNCATE on it, and every table below records its row changes into it.
UI actions are audited twice over: the ui_action row (the user, the request, the answer)
lands here, and the owning service logs the change under the user's own token.

Revision ID: 0003_audit_log
Revises: 0002_ui_users
Create Date: 2026-12-02 03:00:00

"""

from collections.abc import Sequence

from alembic import op
from duewise_service.audit import MACHINERY_TABLES, attach_all, create_audit_log, drop_audit_log

revision: str = "0003_audit_log"
down_revision: str | Sequence[str] | None = "0002_ui_users"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: Not audited besides the machinery: the projections of invoice facts (invoice, customer),
#: which the events rebuild and invoice's own log records at the source.
NOT_AUDITED = (*MACHINERY_TABLES, "invoice", "customer")


def upgrade() -> None:
    create_audit_log(op)
    attach_all(op, exclude=NOT_AUDITED)


def downgrade() -> None:
    drop_audit_log(op)
