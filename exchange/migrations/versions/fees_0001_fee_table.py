"""The fee table: each fee kind's rate and each category's commission.

Revision ID: fees_0001
Revises:
Create Date: 2026-12-05

One row per rate an operator set: ``name`` is a fee kind (``escrow``,
``cash_out``, ...) or ``category:<capability prefix>``. A kind without a row
has the default rate of the product plan (wallet/money.py).

Spelled out rather than imported from ``exchange``: a migration is a frozen
snapshot, while the code follows the newest revision.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "fees_0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = ("fees",)
depends_on: str | Sequence[str] | None = "exchange_0001"


def upgrade() -> None:
    op.create_table(
        "exchange_fees",
        sa.Column("name", sa.Text, primary_key=True),
        sa.Column("rate_bps", sa.Integer, nullable=False),
        sa.Column("updated_at_ms", sa.BigInteger, nullable=False),
        sa.Column("updated_by", sa.Text, nullable=False),
        sa.CheckConstraint("rate_bps >= 0 AND rate_bps <= 10000", name="fee_rate_in_range"),
    )


def downgrade() -> None:
    op.drop_table("exchange_fees")
