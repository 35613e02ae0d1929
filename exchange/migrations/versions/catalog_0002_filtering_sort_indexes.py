"""Sort indexes that carry the filters; on SQLite, the full-text key on the listing.

Revision ID: catalog_0002
Revises: catalog_0001
Create Date: 2026-11-22

A search that walks a sort order tests each listing it reaches against the
filters. With price, mean rating and settled count in each sort index (after
the listing id, so the index still serves its ORDER BY), those tests read the
index entry only: SQLite defers the table read until a column the index
lacks is needed, PostgreSQL can scan the index alone. A walk past many
listings that fail "rating at least 4.5 and 50 settled contracts" then costs
index pages instead of a table read per listing.

On SQLite the listing's full-text document id moves from the side table of
catalog_0001 onto the listing itself (``document_id``, set by the insert
trigger to one more than the largest so far, so it never changes, unlike a
rowid under VACUUM), and into the sort indexes: testing a listing against
the words is then a lookup of an index value in the set of matching
documents, and a search that starts from the words reads each listing by
its document id, without the detour through the side table.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "catalog_0002"
down_revision: str | Sequence[str] | None = "catalog_0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_FILTERS = ["price_millicredits", "rating_mean", "settled_count"]
_SORT_KEYS = {
    "exchange_listings_by_price": ["price_millicredits", "listing_id"],
    "exchange_listings_by_rating": ["rating_mean", "rating_count", "listing_id"],
    "exchange_listings_by_settled": ["settled_count", "listing_id"],
    "exchange_listings_by_created": ["created_at_ms", "listing_id"],
}
_FTS_TRIGGERS = ("insert", "update", "delete")


def upgrade() -> None:
    sqlite = op.get_bind().dialect.name != "postgresql"
    if sqlite:
        _move_document_ids_onto_listings()
    for name, keys in _SORT_KEYS.items():
        op.drop_index(name, table_name="exchange_listings")
        trailing = [column for column in _FILTERS if column not in keys]
        if sqlite:
            trailing.append("document_id")
        op.create_index(name, "exchange_listings", ["status", *keys, *trailing])


def _move_document_ids_onto_listings() -> None:
    op.execute("ALTER TABLE exchange_listings ADD COLUMN document_id INTEGER")
    op.execute(
        "UPDATE exchange_listings SET document_id = (SELECT s.document_id "
        "FROM exchange_listing_search_ids AS s WHERE s.listing_id = exchange_listings.listing_id)"
    )
    op.execute(
        "CREATE UNIQUE INDEX exchange_listings_by_document ON exchange_listings (document_id)"
    )
    for trigger in _FTS_TRIGGERS:
        op.execute(f"DROP TRIGGER exchange_listings_fts_{trigger}")
    op.execute("DROP TABLE exchange_listing_search_ids")
    op.execute(
        "CREATE TRIGGER exchange_listings_fts_insert AFTER INSERT ON exchange_listings BEGIN "
        "UPDATE exchange_listings SET document_id = "
        "(SELECT coalesce(max(document_id), 0) + 1 FROM exchange_listings) "
        "WHERE listing_id = new.listing_id; "
        "INSERT INTO exchange_listings_fts (rowid, capability, description, tags) VALUES ("
        "(SELECT document_id FROM exchange_listings WHERE listing_id = new.listing_id), "
        "new.capability, new.description, new.tags); "
        "END"
    )
    # Only the searchable columns: reputation counters change on every
    # settlement and must not rewrite the text index.
    op.execute(
        "CREATE TRIGGER exchange_listings_fts_update "
        "AFTER UPDATE OF capability, description, tags ON exchange_listings BEGIN "
        "UPDATE exchange_listings_fts SET capability = new.capability, "
        "description = new.description, tags = new.tags WHERE rowid = new.document_id; "
        "END"
    )
    op.execute(
        "CREATE TRIGGER exchange_listings_fts_delete AFTER DELETE ON exchange_listings BEGIN "
        "DELETE FROM exchange_listings_fts WHERE rowid = old.document_id; "
        "END"
    )


def downgrade() -> None:
    sqlite = op.get_bind().dialect.name != "postgresql"
    for name, keys in _SORT_KEYS.items():
        op.drop_index(name, table_name="exchange_listings")
        op.create_index(name, "exchange_listings", ["status", *keys])
    if sqlite:
        _move_document_ids_back()


def _move_document_ids_back() -> None:
    for trigger in _FTS_TRIGGERS:
        op.execute(f"DROP TRIGGER exchange_listings_fts_{trigger}")
    op.execute(
        "CREATE TABLE exchange_listing_search_ids ("
        "document_id INTEGER PRIMARY KEY, listing_id TEXT NOT NULL UNIQUE)"
    )
    op.execute(
        "INSERT INTO exchange_listing_search_ids (document_id, listing_id) "
        "SELECT document_id, listing_id FROM exchange_listings"
    )
    op.execute("DROP INDEX exchange_listings_by_document")
    op.execute("ALTER TABLE exchange_listings DROP COLUMN document_id")
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
