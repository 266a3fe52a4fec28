"""collector UI: users, sessions, failed sign-ins and the action audit log

Revision ID: 0002_ui_users
Revises: 0001_initial
Create Date: 2026-11-23 15:30:00

"""

import datetime as dt
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0002_ui_users"
down_revision: str | Sequence[str] | None = "0001_initial"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _now(name: str) -> sa.Column[dt.datetime]:
    return sa.Column(
        name, sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
    )


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table(
        "ui_user",
        sa.Column("user_name", sa.Text(), nullable=False),
        sa.Column("display_name", sa.Text(), nullable=False),
        sa.Column("role", sa.Text(), nullable=False),
        sa.Column("password_hash", sa.Text(), nullable=False),
        sa.Column(
            "api_tokens",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default="{}",
            nullable=False,
        ),
        _now("created_at"),
        sa.Column("disabled_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("role IN ('collector', 'admin')", name=op.f("ck_ui_user_role")),
        sa.PrimaryKeyConstraint("user_name", name=op.f("pk_ui_user")),
    )
    op.create_table(
        "ui_session",
        sa.Column("id_hash", sa.Text(), nullable=False),
        sa.Column("user_name", sa.Text(), nullable=False),
        sa.Column("csrf_token", sa.Text(), nullable=False),
        _now("created_at"),
        _now("last_seen_at"),
        sa.ForeignKeyConstraint(
            ["user_name"],
            ["ui_user.user_name"],
            name=op.f("fk_ui_session_user_name_ui_user"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id_hash", name=op.f("pk_ui_session")),
    )
    op.create_index(op.f("ix_ui_session_user_name"), "ui_session", ["user_name"], unique=False)
    op.create_table(
        "ui_login_failure",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("user_name", sa.Text(), nullable=False),
        _now("at"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ui_login_failure")),
    )
    op.create_index(
        "ix_ui_login_failure_user_name_at", "ui_login_failure", ["user_name", "at"], unique=False
    )
    op.create_table(
        "ui_action",
        sa.Column("id", sa.Text(), nullable=False),
        _now("at"),
        sa.Column("user_name", sa.Text(), nullable=False),
        sa.Column("customer_id", sa.Text(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("service", sa.Text(), nullable=False),
        sa.Column("request", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.Column("result", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ui_action")),
    )
    op.create_index(op.f("ix_ui_action_customer_id"), "ui_action", ["customer_id"], unique=False)


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_index(op.f("ix_ui_action_customer_id"), table_name="ui_action")
    op.drop_table("ui_action")
    op.drop_index("ix_ui_login_failure_user_name_at", table_name="ui_login_failure")
    op.drop_table("ui_login_failure")
    op.drop_index(op.f("ix_ui_session_user_name"), table_name="ui_session")
    op.drop_table("ui_session")
    op.drop_table("ui_user")
