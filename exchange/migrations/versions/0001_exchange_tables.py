"""Exchange tables: listings, contracts, contract events, outbox, operator audit.

Revision ID: exchange_0001
Revises:
Create Date: 2026-11-21
"""

import sqlalchemy as sa
from alembic import op

revision = "exchange_0001"
down_revision = None
branch_labels = ("exchange",)
depends_on = None

_CONTRACT_STATES = "('open', 'delivered', 'disputed', 'released', 'refunded', 'resolved')"
_SETTLED_STATES = "('released', 'refunded', 'resolved')"


def upgrade() -> None:
    op.create_table(
        "exchange_listings",
        sa.Column("listing_id", sa.Text, primary_key=True),
        sa.Column("provider_id", sa.Text, nullable=False),
        sa.Column("capability", sa.Text, nullable=False),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("price_millicredits", sa.BigInteger, nullable=False),
        sa.Column("input_schema", sa.Text, nullable=False),
        sa.Column("output_schema", sa.Text, nullable=False),
        sa.Column("version", sa.Text, nullable=False),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("created_at_ms", sa.BigInteger, nullable=False),
        sa.Column("updated_at_ms", sa.BigInteger, nullable=False),
        sa.CheckConstraint("price_millicredits > 0", name="listing_price_positive"),
        sa.CheckConstraint("status IN ('active', 'inactive')", name="listing_status_known"),
        sa.UniqueConstraint("provider_id", "capability", name="listing_one_per_capability"),
    )
    op.create_index(
        "exchange_listings_by_capability",
        "exchange_listings",
        ["capability", "status", "price_millicredits"],
    )
    op.create_table(
        "exchange_contracts",
        sa.Column("contract_id", sa.Text, primary_key=True),
        sa.Column("buyer_id", sa.Text, nullable=False),
        sa.Column("provider_id", sa.Text, nullable=False),
        sa.Column("capability", sa.Text, nullable=False),
        sa.Column("state", sa.Text, nullable=False),
        sa.Column("price_millicredits", sa.BigInteger, nullable=False),
        sa.Column("fee_millicredits", sa.BigInteger, nullable=False),
        sa.Column("fee_rate_bps", sa.Integer, nullable=False),
        sa.Column("net_millicredits", sa.BigInteger, nullable=True),
        sa.Column("refunded_millicredits", sa.BigInteger, nullable=False),
        sa.Column("delivery_deadline_ms", sa.BigInteger, nullable=False),
        sa.Column("review_deadline_ms", sa.BigInteger, nullable=True),
        sa.Column("dispute_deadline_ms", sa.BigInteger, nullable=True),
        sa.Column("due_at_ms", sa.BigInteger, nullable=True),
        sa.Column("quote_envelope", sa.Text, nullable=False),
        sa.Column("acceptance_envelope", sa.Text, nullable=False),
        sa.Column("record_envelope", sa.Text, nullable=False),
        sa.Column("task", sa.Text, nullable=False),
        sa.Column("result", sa.Text, nullable=True),
        sa.Column("result_sha256", sa.Text, nullable=True),
        sa.Column("result_ref", sa.Text, nullable=True),
        sa.Column("output_schema", sa.Text, nullable=False),
        sa.Column("seal_result", sa.Boolean, nullable=False),
        sa.Column("dispute_reason", sa.Text, nullable=True),
        sa.Column("buyer_cancel_requested", sa.Boolean, nullable=False),
        sa.Column("resolution", sa.Text, nullable=True),
        sa.Column("created_at_ms", sa.BigInteger, nullable=False),
        sa.Column("updated_at_ms", sa.BigInteger, nullable=False),
        sa.CheckConstraint("price_millicredits > 0", name="contract_price_positive"),
        sa.CheckConstraint("fee_rate_bps BETWEEN 0 AND 10000", name="contract_fee_rate_known"),
        sa.CheckConstraint("refunded_millicredits >= 0", name="contract_refund_positive"),
        sa.CheckConstraint(
            "fee_millicredits >= 0 AND fee_millicredits <= price_millicredits",
            name="contract_fee_within_price",
        ),
        sa.CheckConstraint(f"state IN {_CONTRACT_STATES}", name="contract_state_known"),
        # A settled contract accounts for every millicredit of its price.
        sa.CheckConstraint(
            f"state NOT IN {_SETTLED_STATES} OR "
            "net_millicredits + fee_millicredits + refunded_millicredits = price_millicredits",
            name="contract_settlement_adds_up",
        ),
        sa.CheckConstraint("buyer_id <> provider_id", name="contract_not_self_dealt"),
    )
    op.create_index("exchange_contracts_by_buyer", "exchange_contracts", ["buyer_id"])
    op.create_index("exchange_contracts_by_provider", "exchange_contracts", ["provider_id"])
    op.create_index("exchange_contracts_by_state", "exchange_contracts", ["state"])
    # The sweeper's query: contracts whose timer is due, oldest first.
    op.create_index("exchange_contracts_by_due_time", "exchange_contracts", ["due_at_ms"])
    op.create_table(
        "exchange_contract_events",
        sa.Column("event_id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("contract_id", sa.Text, nullable=False),
        sa.Column("event", sa.Text, nullable=False),
        sa.Column("actor_id", sa.Text, nullable=False),
        sa.Column("to_state", sa.Text, nullable=False),
        sa.Column("detail", sa.Text, nullable=False),
        sa.Column("at_ms", sa.BigInteger, nullable=False),
    )
    op.create_index(
        "exchange_contract_events_by_contract", "exchange_contract_events", ["contract_id"]
    )
    # Notices are written here in the transaction that causes them, then
    # published to JetStream; nothing is lost if the worker dies in between.
    op.create_table(
        "exchange_outbox",
        sa.Column("notice_id", sa.Text, primary_key=True),
        sa.Column("subject", sa.Text, nullable=False),
        sa.Column("payload", sa.Text, nullable=False),
        sa.Column("created_at_ms", sa.BigInteger, nullable=False),
        sa.Column("published_at_ms", sa.BigInteger, nullable=True),
    )
    op.create_index(
        "exchange_outbox_unpublished", "exchange_outbox", ["published_at_ms", "created_at_ms"]
    )
    op.create_table(
        "exchange_operator_audit",
        sa.Column("audit_id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("operator_id", sa.Text, nullable=False),
        sa.Column("action", sa.Text, nullable=False),
        sa.Column("subject_id", sa.Text, nullable=False),
        sa.Column("amount_millicredits", sa.BigInteger, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("transfer_id", sa.Text, nullable=False, unique=True),
        sa.Column("at_ms", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("exchange_outbox")
    op.drop_table("exchange_contract_events")
    op.drop_table("exchange_operator_audit")
    op.drop_table("exchange_contracts")
    op.drop_table("exchange_listings")
