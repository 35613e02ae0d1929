"""Negotiations: the one contract each negotiation may open.

Revision ID: negotiation_0001
Revises:
Create Date: 2026-11-22

A negotiation is (RFQ id, buyer, provider); ``negotiation_id`` is the
SHA-256 of those three (exchange/domain/negotiation_rules.py). The primary key is what
makes a second accepted offer of the same negotiation fail, even when two
acceptances race.

Spelled out rather than imported from ``exchange``: a migration is a frozen
snapshot, while the code follows the newest revision.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "negotiation_0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = ("negotiation",)
depends_on: str | Sequence[str] | None = "exchange_0001"


def upgrade() -> None:
    op.create_table(
        "exchange_negotiations",
        sa.Column("negotiation_id", sa.Text, primary_key=True),
        sa.Column("contract_id", sa.Text, nullable=False, unique=True),
        sa.Column("rfq_id", sa.Text, nullable=False),
        sa.Column("buyer_id", sa.Text, nullable=False),
        sa.Column("provider_id", sa.Text, nullable=False),
        sa.Column("accepted_round", sa.Integer, nullable=False),
        sa.Column("created_at_ms", sa.BigInteger, nullable=False),
        sa.CheckConstraint("accepted_round >= 0", name="negotiation_round_not_negative"),
        sa.CheckConstraint("buyer_id <> provider_id", name="negotiation_not_self_dealt"),
    )


def downgrade() -> None:
    op.drop_table("exchange_negotiations")
