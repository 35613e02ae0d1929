"""Notices: refused purchases kept for the human, and when the user last read the notices.

Revision ID: portal_0002
Revises: portal_0001
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "portal_0002"
down_revision = "portal_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "portal_spending_refusals",
        sa.Column(
            "refusal_id",
            sa.BigInteger().with_variant(sa.Integer, "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column("agent_id", sa.Text, nullable=False),
        sa.Column("purchase_id", sa.Text, nullable=False),
        sa.Column("code", sa.Text, nullable=False),
        sa.Column("capability", sa.Text, nullable=False),
        sa.Column("provider_id", sa.Text, nullable=False),
        sa.Column("price_millicredits", sa.BigInteger, nullable=False),
        # Which rule refused (exchange.domain.spending_rules.RefusalCause), and
        # the exchange's own message to the agent.
        sa.Column("cause", sa.Text, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("at_ms", sa.BigInteger, nullable=False),
        sa.UniqueConstraint(
            "agent_id", "purchase_id", "code", name="portal_spending_refusals_once"
        ),
        sa.CheckConstraint("price_millicredits > 0", name="portal_refusal_price_positive"),
    )
    # The notices read and the pruning deletes by agent, newest first.
    op.create_index(
        "portal_spending_refusals_by_agent",
        "portal_spending_refusals",
        ["agent_id", "refusal_id"],
    )
    # SQLite adds a NOT NULL column in place when it has a default.
    op.add_column(
        "portal_users",
        sa.Column("notices_seen_at_ms", sa.BigInteger, nullable=False, server_default="0"),
    )


def downgrade() -> None:
    op.drop_column("portal_users", "notices_seen_at_ms")
    op.drop_index("portal_spending_refusals_by_agent", table_name="portal_spending_refusals")
    op.drop_table("portal_spending_refusals")
