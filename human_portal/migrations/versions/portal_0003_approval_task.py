"""Approvals keep the agent's task, so the human reads what they approve.

Revision ID: portal_0003
Revises: portal_0002
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "portal_0003"
down_revision = "portal_0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # SQLite adds a NOT NULL column in place when it has a default.
    op.add_column(
        "portal_approvals",
        sa.Column("task", sa.Text, nullable=False, server_default=""),
    )


def downgrade() -> None:
    op.drop_column("portal_approvals", "task")
