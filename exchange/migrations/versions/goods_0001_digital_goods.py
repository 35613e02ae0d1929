"""Digital goods: items, their published versions, and licences.

Revision ID: goods_0001
Revises:
Create Date: 2026-12-06

An item is sold by one provider under a slug (its id is a hash of both); each
published version names its ciphertext (stored in the exchange's object
store) and keeps the content key sealed to the exchange's key, never in
clear. A licence is one per (item, buyer); the checks repeat the money rules
of exchange/domain/goods_rules.py, so that no writer can break them: its
price splits into fee and net, and its range of versions is not empty.

Spelled out rather than imported from ``exchange``: a migration is a frozen
snapshot, while the code follows the newest revision.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "goods_0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = ("goods",)
depends_on: str | Sequence[str] | None = "exchange_0001"


def upgrade() -> None:
    op.create_table(
        "exchange_goods_items",
        sa.Column("item_id", sa.Text, primary_key=True),
        sa.Column("provider_id", sa.Text, nullable=False),
        sa.Column("slug", sa.Text, nullable=False),
        sa.Column("title", sa.Text, nullable=False),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("artifact_kind", sa.Text, nullable=False),
        sa.Column("capability", sa.Text, nullable=False),
        sa.Column("price_millicredits", sa.BigInteger, nullable=False),
        sa.Column("updates_included", sa.Integer, nullable=True),
        sa.Column("terms", sa.Text, nullable=False),
        sa.Column("current_version", sa.Integer, nullable=False),
        # The current version's ciphertext, as its version row holds it.
        sa.Column("ciphertext_sha256", sa.Text, nullable=False),
        sa.Column("size_bytes", sa.BigInteger, nullable=False),
        sa.Column("created_at_ms", sa.BigInteger, nullable=False),
        sa.Column("updated_at_ms", sa.BigInteger, nullable=False),
        sa.UniqueConstraint("provider_id", "slug", name="goods_item_slug_once"),
        sa.CheckConstraint("price_millicredits > 0", name="goods_item_price_positive"),
        sa.CheckConstraint(
            "artifact_kind IN ('package', 'credentials')", name="goods_item_kind_known"
        ),
        sa.CheckConstraint("current_version >= 1", name="goods_item_version_positive"),
    )
    op.create_index(
        "exchange_goods_items_by_creation", "exchange_goods_items", ["created_at_ms", "item_id"]
    )
    op.create_table(
        "exchange_goods_versions",
        sa.Column("item_id", sa.Text, nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("ciphertext_sha256", sa.Text, nullable=False),
        sa.Column("size_bytes", sa.BigInteger, nullable=False),
        sa.Column("chunk_count", sa.Integer, nullable=False),
        sa.Column("sealed_key", sa.Text, nullable=False),
        sa.Column("published_at_ms", sa.BigInteger, nullable=False),
        sa.Column("notified_through", sa.Text, nullable=True),
        sa.Column("notices_done", sa.Boolean, nullable=False),
        sa.PrimaryKeyConstraint("item_id", "version", name="goods_version_once"),
    )
    op.create_index(
        "exchange_goods_versions_announcing", "exchange_goods_versions", ["notices_done"]
    )
    op.create_table(
        "exchange_goods_licences",
        sa.Column("licence_id", sa.Text, primary_key=True),
        sa.Column("item_id", sa.Text, nullable=False),
        sa.Column("buyer_id", sa.Text, nullable=False),
        sa.Column("provider_id", sa.Text, nullable=False),
        sa.Column("min_version", sa.Integer, nullable=False),
        sa.Column("max_version", sa.Integer, nullable=True),
        sa.Column("price_millicredits", sa.BigInteger, nullable=False),
        sa.Column("fee_millicredits", sa.BigInteger, nullable=False),
        sa.Column("net_millicredits", sa.BigInteger, nullable=False),
        sa.Column("fee_rate_bps", sa.Integer, nullable=False),
        sa.Column("terms", sa.Text, nullable=False),
        sa.Column("licence_envelope", sa.Text, nullable=False),
        sa.Column("created_at_ms", sa.BigInteger, nullable=False),
        sa.UniqueConstraint("item_id", "buyer_id", name="goods_licence_once_per_buyer"),
        sa.CheckConstraint(
            "fee_millicredits >= 0 AND net_millicredits >= 0"
            " AND fee_millicredits + net_millicredits = price_millicredits",
            name="goods_licence_price_splits",
        ),
        sa.CheckConstraint(
            "max_version IS NULL OR max_version >= min_version", name="goods_licence_range"
        ),
        sa.CheckConstraint("buyer_id <> provider_id", name="goods_licence_not_self_dealt"),
    )
    # The holders a new version reaches, walked in licence id order.
    op.create_index(
        "exchange_goods_licences_by_item", "exchange_goods_licences", ["item_id", "licence_id"]
    )

    # Versions uploaded and not yet published, so that a provider's unpublished
    # ciphertext stays bounded (the goods store keeps what it is given).
    op.create_table(
        "exchange_goods_drafts",
        sa.Column("storage_key", sa.Text, primary_key=True),
        sa.Column("provider_id", sa.Text, nullable=False),
        sa.Column("created_at_ms", sa.BigInteger, nullable=False),
    )
    op.create_index("exchange_goods_drafts_by_provider", "exchange_goods_drafts", ["provider_id"])


def downgrade() -> None:
    op.drop_table("exchange_goods_drafts")
    op.drop_index("exchange_goods_licences_by_item", "exchange_goods_licences")
    op.drop_table("exchange_goods_licences")
    op.drop_index("exchange_goods_versions_announcing", "exchange_goods_versions")
    op.drop_table("exchange_goods_versions")
    op.drop_index("exchange_goods_items_by_creation", "exchange_goods_items")
    op.drop_table("exchange_goods_items")
