"""Timer leases: which worker runs each background pass (sweeps, the outbox relay).

Revision ID: timers_0001
Revises:
Create Date: 2026-12-12

One row per background job. A worker runs a pass of that job only while it
holds the row's lease: ``holder`` is the worker's random instance id and the
lease is its own until ``expires_at_ms``; the holder renews it by running
again, and once it lapses (the worker died or stalled) any worker may take
it. ``acquired_at_ms`` is when the current holder took it, so an operator
can see how long a worker has been doing a job and when it changed hands.

Spelled out rather than imported from ``exchange``: a migration is a frozen
snapshot, while the code follows the newest revision.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "timers_0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = ("timers",)
depends_on: str | Sequence[str] | None = "exchange_0001"


def upgrade() -> None:
    op.create_table(
        "exchange_timer_leases",
        sa.Column("job", sa.Text, primary_key=True),
        sa.Column("holder", sa.Text, nullable=False),
        sa.Column("acquired_at_ms", sa.BigInteger, nullable=False),
        sa.Column("expires_at_ms", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("exchange_timer_leases")
