"""Catalog search, listing revisions, ratings and reputation, direct transfers.

Revision ID: catalog_0001
Revises:
Create Date: 2026-11-22

Listings gain tags, a revision number and the reputation counters that
search filters and sorts on; the counters are kept by a trigger on
``exchange_contracts`` (so no path that settles a contract can forget them)
and by the rating use case. Full-text search is FTS5 on SQLite and a
generated ``tsvector`` column with a GIN index on PostgreSQL.

Spelled out rather than imported from ``exchange.adapters.exchange_tables``: a migration is a
frozen snapshot, while the schema module follows the newest revision.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "catalog_0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = ("catalog",)
depends_on: str | Sequence[str] | None = "exchange_0001"

# The contract states that count as settled for reputation, as in
# exchange/domain/reputation_math.py. A state added later counts as not settled until a
# new migration lists it here; the invariant check compares the counters with
# a recount from exchange.domain.reputation_math and reports any drift.
_SETTLED_STATES = "('released', 'refunded', 'resolved')"

_REPUTATION_COUNTERS = (
    "settled_count",
    "on_time_count",
    "dispute_count",
    "refund_count",
    "rating_count",
    "rating_sum",
    "unique_buyer_count",
)

# Sort orders of catalog.search: each walks its own index when the filters are
# not selective; the columns (and their direction) match the ORDER BY clauses
# in exchange/adapters/listing_store.py.
_SORT_INDEXES = {
    "exchange_listings_by_price": ["status", "price_millicredits", "listing_id"],
    "exchange_listings_by_rating": ["status", "rating_mean", "rating_count", "listing_id"],
    "exchange_listings_by_settled": ["status", "settled_count", "listing_id"],
    "exchange_listings_by_created": ["status", "created_at_ms", "listing_id"],
}


def upgrade() -> None:
    _extend_listings()
    _create_listing_revisions()
    _create_listing_tags()
    _create_ratings()
    _create_reputation_buyers()
    _create_transfers()
    dialect = op.get_bind().dialect.name
    if dialect == "postgresql":
        _create_postgresql_text_search()
        _create_postgresql_reputation_trigger()
    else:
        _create_sqlite_text_search()
        _create_sqlite_reputation_trigger()
    _backfill()


def _extend_listings() -> None:
    op.add_column(
        "exchange_listings", sa.Column("tags", sa.Text, nullable=False, server_default="")
    )
    op.add_column(
        "exchange_listings",
        sa.Column("revision", sa.Integer, nullable=False, server_default="1"),
    )
    for counter in _REPUTATION_COUNTERS:
        op.add_column(
            "exchange_listings",
            sa.Column(counter, sa.BigInteger, nullable=False, server_default="0"),
        )
    # 0 means "not rated yet" (rating_count is 0): a real mean is 1..5, and 0
    # sorts unrated listings last on both databases, where NULL would not.
    op.add_column(
        "exchange_listings",
        sa.Column("rating_mean", sa.Float, nullable=False, server_default="0"),
    )
    for name, columns in _SORT_INDEXES.items():
        op.create_index(name, "exchange_listings", columns)


def _create_listing_revisions() -> None:
    op.create_table(
        "exchange_listing_revisions",
        sa.Column("listing_id", sa.Text, nullable=False),
        sa.Column("revision", sa.Integer, nullable=False),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("price_millicredits", sa.BigInteger, nullable=False),
        sa.Column("input_schema", sa.Text, nullable=False),
        sa.Column("output_schema", sa.Text, nullable=False),
        sa.Column("version", sa.Text, nullable=False),
        sa.Column("tags", sa.Text, nullable=False),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("changed_at_ms", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("listing_id", "revision", name="listing_revision_once"),
        sa.CheckConstraint("revision >= 1", name="listing_revision_positive"),
    )


def _create_listing_tags() -> None:
    op.create_table(
        "exchange_listing_tags",
        sa.Column("tag", sa.Text, nullable=False),
        sa.Column("listing_id", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint("tag", "listing_id", name="listing_tag_once"),
    )
    op.create_index("exchange_listing_tags_by_listing", "exchange_listing_tags", ["listing_id"])


def _create_ratings() -> None:
    op.create_table(
        "exchange_ratings",
        # One rating per contract: the primary key refuses a second one.
        sa.Column("contract_id", sa.Text, primary_key=True),
        sa.Column("provider_id", sa.Text, nullable=False),
        sa.Column("capability", sa.Text, nullable=False),
        sa.Column("buyer_id", sa.Text, nullable=False),
        sa.Column("stars", sa.Integer, nullable=False),
        sa.Column("comment", sa.Text, nullable=False),
        sa.Column("rated_at_ms", sa.BigInteger, nullable=False),
        sa.CheckConstraint("stars BETWEEN 1 AND 5", name="rating_stars_known"),
        sa.CheckConstraint("buyer_id <> provider_id", name="rating_not_self_dealt"),
    )
    op.create_index(
        "exchange_ratings_by_provider",
        "exchange_ratings",
        ["provider_id", "capability", "rated_at_ms"],
    )


def _create_reputation_buyers() -> None:
    # The distinct buyers of each provider and capability among settled
    # contracts, so that the unique-buyer counter grows once per buyer.
    op.create_table(
        "exchange_reputation_buyers",
        sa.Column("provider_id", sa.Text, nullable=False),
        sa.Column("capability", sa.Text, nullable=False),
        sa.Column("buyer_id", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint(
            "provider_id", "capability", "buyer_id", name="reputation_buyer_once"
        ),
    )


def _create_transfers() -> None:
    op.create_table(
        "exchange_transfers",
        sa.Column("reference", sa.Text, primary_key=True),
        sa.Column("payer_id", sa.Text, nullable=False),
        sa.Column("transfer_id", sa.Text, nullable=False),
        sa.Column("payee_id", sa.Text, nullable=False),
        sa.Column("amount_millicredits", sa.BigInteger, nullable=False),
        sa.Column("fee_millicredits", sa.BigInteger, nullable=False),
        sa.Column("net_millicredits", sa.BigInteger, nullable=False),
        sa.Column("memo", sa.Text, nullable=False),
        sa.Column("created_at_ms", sa.BigInteger, nullable=False),
        sa.UniqueConstraint("payer_id", "transfer_id", name="transfer_id_once_per_payer"),
        sa.CheckConstraint("amount_millicredits > 0", name="transfer_amount_positive"),
        sa.CheckConstraint(
            "fee_millicredits >= 0 AND net_millicredits >= 0 "
            "AND fee_millicredits + net_millicredits = amount_millicredits",
            name="transfer_adds_up",
        ),
        sa.CheckConstraint("payer_id <> payee_id", name="transfer_not_to_self"),
    )


def _create_sqlite_text_search() -> None:
    # FTS5 rows are keyed by an integer; a listing's rowid is not stable (VACUUM
    # may renumber a table without an INTEGER PRIMARY KEY), so each listing gets
    # a stable document id here and the FTS row uses it.
    op.execute(
        "CREATE TABLE exchange_listing_search_ids ("
        "document_id INTEGER PRIMARY KEY, listing_id TEXT NOT NULL UNIQUE)"
    )
    op.execute(
        "CREATE VIRTUAL TABLE exchange_listings_fts USING fts5("
        "capability, description, tags, tokenize = 'porter unicode61')"
    )
    document_id = (
        "(SELECT document_id FROM exchange_listing_search_ids WHERE listing_id = new.listing_id)"
    )
    op.execute(
        "CREATE TRIGGER exchange_listings_fts_insert AFTER INSERT ON exchange_listings BEGIN "
        "INSERT INTO exchange_listing_search_ids (listing_id) VALUES (new.listing_id); "
        "INSERT INTO exchange_listings_fts (rowid, capability, description, tags) "
        f"VALUES ({document_id}, new.capability, new.description, new.tags); "
        "END"
    )
    # Only the searchable columns: reputation counters change on every
    # settlement and must not rewrite the text index.
    op.execute(
        "CREATE TRIGGER exchange_listings_fts_update "
        "AFTER UPDATE OF capability, description, tags ON exchange_listings BEGIN "
        "UPDATE exchange_listings_fts SET capability = new.capability, "
        "description = new.description, tags = new.tags "
        f"WHERE rowid = {document_id}; "
        "END"
    )
    old_document_id = document_id.replace("new.", "old.")
    op.execute(
        "CREATE TRIGGER exchange_listings_fts_delete AFTER DELETE ON exchange_listings BEGIN "
        f"DELETE FROM exchange_listings_fts WHERE rowid = {old_document_id}; "
        "DELETE FROM exchange_listing_search_ids WHERE listing_id = old.listing_id; "
        "END"
    )


def _create_postgresql_text_search() -> None:
    # Dots in capabilities separate words ("text.upper" is "text upper").
    op.execute(
        "ALTER TABLE exchange_listings ADD COLUMN search_document tsvector "
        "GENERATED ALWAYS AS (to_tsvector('english'::regconfig, "
        "translate(capability, '.', ' ') || ' ' || description || ' ' || tags)) STORED"
    )
    op.execute(
        "CREATE INDEX exchange_listings_search ON exchange_listings USING GIN (search_document)"
    )


# What one settled contract adds to its listing's counters. The unique-buyer
# increment is decided differently per database (see each trigger).
_SETTLEMENT_INCREMENTS = (
    "settled_count = settled_count + 1, "
    "on_time_count = on_time_count + "
    "CASE WHEN new.result_sha256 IS NOT NULL THEN 1 ELSE 0 END, "
    "refund_count = refund_count + CASE WHEN new.state = 'refunded' THEN 1 ELSE 0 END, "
    "dispute_count = dispute_count + CASE WHEN new.state = 'resolved' THEN 1 ELSE 0 END"
)


def _create_sqlite_reputation_trigger() -> None:
    # SQLite runs one writer at a time, so checking for the buyer before
    # inserting it cannot race.
    op.execute(
        "CREATE TRIGGER exchange_reputation_on_settle AFTER UPDATE OF state ON exchange_contracts "
        f"WHEN new.state IN {_SETTLED_STATES} AND old.state NOT IN {_SETTLED_STATES} BEGIN "
        f"UPDATE exchange_listings SET {_SETTLEMENT_INCREMENTS}, "
        "unique_buyer_count = unique_buyer_count + CASE WHEN EXISTS ("
        "SELECT 1 FROM exchange_reputation_buyers WHERE provider_id = new.provider_id "
        "AND capability = new.capability AND buyer_id = new.buyer_id) THEN 0 ELSE 1 END "
        "WHERE provider_id = new.provider_id AND capability = new.capability; "
        "INSERT OR IGNORE INTO exchange_reputation_buyers (provider_id, capability, buyer_id) "
        "VALUES (new.provider_id, new.capability, new.buyer_id); "
        "END"
    )


def _create_postgresql_reputation_trigger() -> None:
    # Inserting the buyer first and counting the inserted row is exact under
    # concurrency: a second settlement by the same buyer waits on the unique
    # index and then inserts nothing.
    op.execute(
        "CREATE FUNCTION exchange_reputation_on_settle() RETURNS trigger "
        "LANGUAGE plpgsql AS $$ "
        "DECLARE new_buyer_count integer; "
        "BEGIN "
        "INSERT INTO exchange_reputation_buyers (provider_id, capability, buyer_id) "
        "VALUES (new.provider_id, new.capability, new.buyer_id) ON CONFLICT DO NOTHING; "
        "GET DIAGNOSTICS new_buyer_count = ROW_COUNT; "
        f"UPDATE exchange_listings SET {_SETTLEMENT_INCREMENTS}, "
        "unique_buyer_count = unique_buyer_count + new_buyer_count "
        "WHERE provider_id = new.provider_id AND capability = new.capability; "
        "RETURN NULL; "
        "END $$"
    )
    op.execute(
        "CREATE TRIGGER exchange_reputation_on_settle AFTER UPDATE OF state ON exchange_contracts "
        f"FOR EACH ROW WHEN (new.state IN {_SETTLED_STATES} "
        f"AND old.state NOT IN {_SETTLED_STATES}) "
        "EXECUTE FUNCTION exchange_reputation_on_settle()"
    )


def _backfill() -> None:
    """Bring listings that existed before this revision up to date."""
    op.execute(
        "INSERT INTO exchange_listing_revisions (listing_id, revision, description, "
        "price_millicredits, input_schema, output_schema, version, tags, status, changed_at_ms) "
        "SELECT listing_id, 1, description, price_millicredits, input_schema, output_schema, "
        "version, tags, status, updated_at_ms FROM exchange_listings"
    )
    if op.get_bind().dialect.name != "postgresql":
        op.execute(
            "INSERT INTO exchange_listing_search_ids (listing_id) "
            "SELECT listing_id FROM exchange_listings ORDER BY listing_id"
        )
        op.execute(
            "INSERT INTO exchange_listings_fts (rowid, capability, description, tags) "
            "SELECT s.document_id, l.capability, l.description, l.tags "
            "FROM exchange_listings l JOIN exchange_listing_search_ids s "
            "ON s.listing_id = l.listing_id"
        )
    op.execute(
        "INSERT INTO exchange_reputation_buyers (provider_id, capability, buyer_id) "
        "SELECT DISTINCT provider_id, capability, buyer_id FROM exchange_contracts "
        f"WHERE state IN {_SETTLED_STATES}"
    )
    settled = (
        "FROM exchange_contracts c WHERE c.provider_id = exchange_listings.provider_id "
        f"AND c.capability = exchange_listings.capability AND c.state IN {_SETTLED_STATES}"
    )
    op.execute(
        "UPDATE exchange_listings SET "
        f"settled_count = (SELECT COUNT(*) {settled}), "
        f"on_time_count = (SELECT COUNT(*) {settled} AND c.result_sha256 IS NOT NULL), "
        f"refund_count = (SELECT COUNT(*) {settled} AND c.state = 'refunded'), "
        f"dispute_count = (SELECT COUNT(*) {settled} AND c.state = 'resolved'), "
        f"unique_buyer_count = (SELECT COUNT(DISTINCT c.buyer_id) {settled})"
    )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER exchange_reputation_on_settle ON exchange_contracts")
        op.execute("DROP FUNCTION exchange_reputation_on_settle()")
        op.execute("DROP INDEX exchange_listings_search")
        op.drop_column("exchange_listings", "search_document")
    else:
        op.execute("DROP TRIGGER exchange_reputation_on_settle")
        for trigger in ("insert", "update", "delete"):
            op.execute(f"DROP TRIGGER exchange_listings_fts_{trigger}")
        op.execute("DROP TABLE exchange_listings_fts")
        op.execute("DROP TABLE exchange_listing_search_ids")
    op.drop_table("exchange_transfers")
    op.drop_table("exchange_reputation_buyers")
    op.drop_table("exchange_ratings")
    op.drop_table("exchange_listing_tags")
    op.drop_table("exchange_listing_revisions")
    for name in _SORT_INDEXES:
        op.drop_index(name, table_name="exchange_listings")
    for column in ("rating_mean", *_REPUTATION_COUNTERS, "revision", "tags"):
        op.drop_column("exchange_listings", column)
