"""Metered sessions and their claims.

Revision ID: metered_0001
Revises:
Create Date: 2026-12-05

A metered session holds a ceiling in escrow; each claim captures part of it
against a usage receipt the buyer signed (kept as evidence). The checks
repeat the money rules of exchange/domain/metered_rules.py, so that no
writer can break them: what is captured splits into fee and net and never
exceeds the ceiling, and a closed session released the rest.

Spelled out rather than imported from ``exchange``: a migration is a frozen
snapshot, while the code follows the newest revision.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "metered_0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = ("metered",)
depends_on: str | Sequence[str] | None = "exchange_0001"


def upgrade() -> None:
    op.create_table(
        "exchange_metered_sessions",
        sa.Column("contract_id", sa.Text, primary_key=True),
        sa.Column("buyer_id", sa.Text, nullable=False),
        sa.Column("provider_id", sa.Text, nullable=False),
        sa.Column("capability", sa.Text, nullable=False),
        sa.Column("unit_price_millicredits", sa.BigInteger, nullable=False),
        sa.Column("units_per_price", sa.Integer, nullable=False),
        sa.Column("ceiling_millicredits", sa.BigInteger, nullable=False),
        sa.Column("fee_rate_bps", sa.Integer, nullable=False),
        sa.Column("state", sa.Text, nullable=False),
        sa.Column("claimed_units", sa.BigInteger, nullable=False),
        sa.Column("captured_millicredits", sa.BigInteger, nullable=False),
        sa.Column("fee_millicredits", sa.BigInteger, nullable=False),
        sa.Column("net_millicredits", sa.BigInteger, nullable=False),
        sa.Column("released_millicredits", sa.BigInteger, nullable=False),
        sa.Column("hold_sequence", sa.Integer, nullable=False),
        sa.Column("expires_at_ms", sa.BigInteger, nullable=False),
        sa.Column("closes_at_ms", sa.BigInteger, nullable=True),
        sa.Column("offer_envelope", sa.Text, nullable=False),
        sa.Column("acceptance_envelope", sa.Text, nullable=False),
        sa.Column("created_at_ms", sa.BigInteger, nullable=False),
        sa.Column("updated_at_ms", sa.BigInteger, nullable=False),
        sa.CheckConstraint("state IN ('open', 'closing', 'closed')", name="metered_state_known"),
        sa.CheckConstraint("units_per_price IN (1, 1000)", name="metered_units_per_price"),
        sa.CheckConstraint(
            "captured_millicredits >= 0 AND captured_millicredits <= ceiling_millicredits",
            name="metered_captured_within_ceiling",
        ),
        sa.CheckConstraint(
            "fee_millicredits + net_millicredits = captured_millicredits",
            name="metered_capture_splits",
        ),
        sa.CheckConstraint(
            "(state = 'closed' AND captured_millicredits + released_millicredits"
            " = ceiling_millicredits) OR (state <> 'closed' AND released_millicredits = 0)",
            name="metered_release_completes",
        ),
        sa.CheckConstraint("buyer_id <> provider_id", name="metered_not_self_dealt"),
    )
    op.create_index(
        "exchange_metered_sessions_due", "exchange_metered_sessions", ["state", "expires_at_ms"]
    )
    op.create_table(
        "exchange_metered_claims",
        sa.Column("contract_id", sa.Text, nullable=False),
        sa.Column("units", sa.BigInteger, nullable=False),
        sa.Column("captured_millicredits", sa.BigInteger, nullable=False),
        sa.Column("fee_millicredits", sa.BigInteger, nullable=False),
        sa.Column("receipt_envelope", sa.Text, nullable=False),
        sa.Column("claimed_at_ms", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("contract_id", "units", name="metered_claim_once"),
    )


def downgrade() -> None:
    op.drop_table("exchange_metered_claims")
    op.drop_index("exchange_metered_sessions_due", "exchange_metered_sessions")
    op.drop_table("exchange_metered_sessions")
