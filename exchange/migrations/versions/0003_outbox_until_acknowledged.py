"""The outbox keeps each notice until its recipient acknowledges it.

Revision ID: exchange_0003
Revises: exchange_0002
Create Date: 2026-12-07

Notices no longer go through a JetStream stream and a durable consumer per
agent (52 KB of nats-server memory each: 52 GB for a million agents,
docs/PERFORMANCE.md). The exchange sends each notice on core NATS into the
recipient's inbox and keeps it in the outbox until the recipient
acknowledges it (``notices.ack``); it sends it again once ``due_at_ms``
passes, and to an agent that asks (``notices.subscribe``).

Upgrading adds the recipient (read off the notice's subject,
``agentx.v2.agent.<id>.notify``), when each was last sent (never) and when
it is next due (at once): the notices still in the outbox are those never
stored in the old stream, so they are sent at the relay's next pass. The
old stream's notices are not carried over (agents should have read them
before the upgrade). Downgrading drops the three columns.

Spelled out rather than imported from ``exchange``: a migration is a frozen
snapshot, while the code follows the newest revision.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "exchange_0003"
down_revision: str | Sequence[str] | None = "exchange_0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_SUBJECT_PREFIX = "agentx.v2.agent."
_SUBJECT_SUFFIX = ".notify"


def upgrade() -> None:
    with op.batch_alter_table("exchange_outbox") as table:
        table.add_column(sa.Column("recipient", sa.Text, nullable=False, server_default=""))
        table.add_column(
            sa.Column("published_at_ms", sa.BigInteger, nullable=False, server_default="0")
        )
        table.add_column(sa.Column("due_at_ms", sa.BigInteger, nullable=False, server_default="0"))
    start = len(_SUBJECT_PREFIX) + 1
    cut = len(_SUBJECT_PREFIX) + len(_SUBJECT_SUFFIX)
    op.execute(
        f"UPDATE exchange_outbox SET recipient = substr(subject, {start}, length(subject) - {cut})"
    )
    op.create_index("exchange_outbox_by_due", "exchange_outbox", ["due_at_ms"])
    op.create_index(
        "exchange_outbox_by_recipient", "exchange_outbox", ["recipient", "created_at_ms"]
    )


def downgrade() -> None:
    op.drop_index("exchange_outbox_by_recipient", table_name="exchange_outbox")
    op.drop_index("exchange_outbox_by_due", table_name="exchange_outbox")
    with op.batch_alter_table("exchange_outbox") as table:
        table.drop_column("due_at_ms")
        table.drop_column("published_at_ms")
        table.drop_column("recipient")
