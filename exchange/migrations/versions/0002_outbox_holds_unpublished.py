"""The outbox holds only the notices JetStream has not stored yet.

Revision ID: exchange_0002
Revises: exchange_0001
Create Date: 2026-12-06

Until now a published notice stayed in ``exchange_outbox`` for ever, marked
with ``published_at_ms``: about 7 KB of database per settled deal (four
notices), half of the exchange's SQLite file in a benchmark of 3,000 deals,
copies of what the notice stream keeps for 8 days anyway. From this
revision a notice leaves the outbox once JetStream has acknowledged it, so
the table holds only what is still to be published.

Upgrading deletes the notices already published and keeps the others for
the relay; ``published_at_ms`` and its index go, and the relay's reads
(oldest first) get an index on ``created_at_ms``. Downgrading brings the
column back, empty: the notices deleted by the upgrade do not come back.

Spelled out rather than imported from ``exchange``: a migration is a frozen
snapshot, while the code follows the newest revision.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "exchange_0002"
down_revision: str | Sequence[str] | None = "exchange_0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("DELETE FROM exchange_outbox WHERE published_at_ms IS NOT NULL")
    op.drop_index("exchange_outbox_unpublished", table_name="exchange_outbox")
    # SQLite cannot drop a column in place: batch mode copies the table.
    with op.batch_alter_table("exchange_outbox") as table:
        table.drop_column("published_at_ms")
    op.create_index("exchange_outbox_by_created", "exchange_outbox", ["created_at_ms"])


def downgrade() -> None:
    op.drop_index("exchange_outbox_by_created", table_name="exchange_outbox")
    with op.batch_alter_table("exchange_outbox") as table:
        table.add_column(sa.Column("published_at_ms", sa.BigInteger, nullable=True))
    op.create_index(
        "exchange_outbox_unpublished", "exchange_outbox", ["published_at_ms", "created_at_ms"]
    )
