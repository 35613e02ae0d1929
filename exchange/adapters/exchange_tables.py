"""The exchange's tables (SQLAlchemy Core), beside the wallet's ``ledger_*`` tables.

Migrations in ``exchange/migrations/versions`` create them; these objects
are what the repository queries with.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Boolean, Column, Float, Index, Integer, MetaData, Table, Text

__all__ = [
    "contract_events",
    "contracts",
    "fees",
    "goods_drafts",
    "goods_items",
    "goods_licences",
    "goods_versions",
    "listing_revisions",
    "listing_tags",
    "listings",
    "metadata",
    "metered_claims",
    "metered_sessions",
    "operator_audit",
    "outbox",
    "plans",
    "ratings",
    "reputation_buyers",
    "subscription_charges",
    "subscriptions",
    "timer_leases",
    "transfers",
]

metadata = MetaData()

listings = Table(
    "exchange_listings",
    metadata,
    Column("listing_id", Text, primary_key=True),
    Column("provider_id", Text, nullable=False),
    Column("capability", Text, nullable=False),
    Column("description", Text, nullable=False),
    Column("price_millicredits", BigInteger, nullable=False),
    Column("input_schema", Text, nullable=False),
    Column("output_schema", Text, nullable=False),
    Column("version", Text, nullable=False),
    Column("status", Text, nullable=False),
    Column("created_at_ms", BigInteger, nullable=False),
    Column("updated_at_ms", BigInteger, nullable=False),
    # From migration catalog_0001: tags (space-separated, also in
    # listing_tags), the current revision, and the reputation counters of the
    # provider for this capability (kept by a trigger on contracts and by
    # ratings; rating_mean is 0 while rating_count is 0). Full-text search
    # adds a column per database that is not listed here: document_id on
    # SQLite (the FTS5 row's key), search_document on PostgreSQL (tsvector).
    Column("tags", Text, nullable=False, server_default=""),
    Column("revision", Integer, nullable=False, server_default="1"),
    Column("settled_count", BigInteger, nullable=False, server_default="0"),
    Column("on_time_count", BigInteger, nullable=False, server_default="0"),
    Column("dispute_count", BigInteger, nullable=False, server_default="0"),
    Column("refund_count", BigInteger, nullable=False, server_default="0"),
    Column("rating_count", BigInteger, nullable=False, server_default="0"),
    Column("rating_sum", BigInteger, nullable=False, server_default="0"),
    Column("unique_buyer_count", BigInteger, nullable=False, server_default="0"),
    Column("rating_mean", Float, nullable=False, server_default="0"),
)

contracts = Table(
    "exchange_contracts",
    metadata,
    Column("contract_id", Text, primary_key=True),
    Column("buyer_id", Text, nullable=False),
    Column("provider_id", Text, nullable=False),
    Column("capability", Text, nullable=False),
    Column("state", Text, nullable=False),
    Column("price_millicredits", BigInteger, nullable=False),
    Column("fee_millicredits", BigInteger, nullable=False),
    Column("fee_rate_bps", Integer, nullable=False),
    Column("net_millicredits", BigInteger, nullable=True),
    Column("refunded_millicredits", BigInteger, nullable=False),
    Column("delivery_deadline_ms", BigInteger, nullable=False),
    Column("review_deadline_ms", BigInteger, nullable=True),
    Column("dispute_deadline_ms", BigInteger, nullable=True),
    Column("due_at_ms", BigInteger, nullable=True),
    Column("quote_envelope", Text, nullable=False),
    Column("acceptance_envelope", Text, nullable=False),
    Column("record_envelope", Text, nullable=False),
    Column("task", Text, nullable=False),
    Column("result", Text, nullable=True),
    Column("result_sha256", Text, nullable=True),
    Column("result_ref", Text, nullable=True),
    Column("output_schema", Text, nullable=False),
    Column("seal_result", Boolean, nullable=False),
    Column("dispute_reason", Text, nullable=True),
    Column("buyer_cancel_requested", Boolean, nullable=False),
    Column("resolution", Text, nullable=True),
    Column("created_at_ms", BigInteger, nullable=False),
    Column("updated_at_ms", BigInteger, nullable=False),
)

contract_events = Table(
    "exchange_contract_events",
    metadata,
    Column("event_id", Integer, primary_key=True, autoincrement=True),
    Column("contract_id", Text, nullable=False),
    Column("event", Text, nullable=False),
    Column("actor_id", Text, nullable=False),
    Column("to_state", Text, nullable=False),
    Column("detail", Text, nullable=False),
    Column("at_ms", BigInteger, nullable=False),
)

# The notices their recipients have not acknowledged yet (notices.ack deletes
# them): sent live after commit, sent again once ``due_at_ms`` passes, and
# again to an agent that asks (notices.subscribe) if not sent within the last
# moments (``published_at_ms``).
outbox = Table(
    "exchange_outbox",
    metadata,
    Column("notice_id", Text, primary_key=True),
    Column("subject", Text, nullable=False),
    Column("payload", Text, nullable=False),
    Column("created_at_ms", BigInteger, nullable=False),
    Column("recipient", Text, nullable=False),
    Column("published_at_ms", BigInteger, nullable=False),
    Column("due_at_ms", BigInteger, nullable=False),
    Index("exchange_outbox_by_due", "due_at_ms"),
    Index("exchange_outbox_by_recipient", "recipient", "created_at_ms"),
    Index("exchange_outbox_by_created", "created_at_ms"),
)

operator_audit = Table(
    "exchange_operator_audit",
    metadata,
    Column("audit_id", Integer, primary_key=True, autoincrement=True),
    Column("operator_id", Text, nullable=False),
    Column("action", Text, nullable=False),
    Column("subject_id", Text, nullable=False),
    Column("amount_millicredits", BigInteger, nullable=False),
    Column("reason", Text, nullable=False),
    Column("transfer_id", Text, nullable=False),
    Column("at_ms", BigInteger, nullable=False),
)

listing_revisions = Table(
    "exchange_listing_revisions",
    metadata,
    Column("listing_id", Text, primary_key=True),
    Column("revision", Integer, primary_key=True),
    Column("description", Text, nullable=False),
    Column("price_millicredits", BigInteger, nullable=False),
    Column("input_schema", Text, nullable=False),
    Column("output_schema", Text, nullable=False),
    Column("version", Text, nullable=False),
    Column("tags", Text, nullable=False),
    Column("status", Text, nullable=False),
    Column("changed_at_ms", BigInteger, nullable=False),
)

listing_tags = Table(
    "exchange_listing_tags",
    metadata,
    Column("tag", Text, primary_key=True),
    Column("listing_id", Text, primary_key=True),
)

ratings = Table(
    "exchange_ratings",
    metadata,
    Column("contract_id", Text, primary_key=True),
    Column("provider_id", Text, nullable=False),
    Column("capability", Text, nullable=False),
    Column("buyer_id", Text, nullable=False),
    Column("stars", Integer, nullable=False),
    Column("comment", Text, nullable=False),
    Column("rated_at_ms", BigInteger, nullable=False),
)

reputation_buyers = Table(
    "exchange_reputation_buyers",
    metadata,
    Column("provider_id", Text, primary_key=True),
    Column("capability", Text, primary_key=True),
    Column("buyer_id", Text, primary_key=True),
)

transfers = Table(
    "exchange_transfers",
    metadata,
    Column("reference", Text, primary_key=True),
    Column("payer_id", Text, nullable=False),
    Column("transfer_id", Text, nullable=False),
    Column("payee_id", Text, nullable=False),
    Column("amount_millicredits", BigInteger, nullable=False),
    Column("fee_millicredits", BigInteger, nullable=False),
    Column("net_millicredits", BigInteger, nullable=False),
    Column("memo", Text, nullable=False),
    Column("created_at_ms", BigInteger, nullable=False),
)

# From migration metered_0001.
metered_sessions = Table(
    "exchange_metered_sessions",
    metadata,
    Column("contract_id", Text, primary_key=True),
    Column("buyer_id", Text, nullable=False),
    Column("provider_id", Text, nullable=False),
    Column("capability", Text, nullable=False),
    Column("unit_price_millicredits", BigInteger, nullable=False),
    Column("units_per_price", Integer, nullable=False),
    Column("ceiling_millicredits", BigInteger, nullable=False),
    Column("fee_rate_bps", Integer, nullable=False),
    Column("state", Text, nullable=False),
    Column("claimed_units", BigInteger, nullable=False),
    Column("captured_millicredits", BigInteger, nullable=False),
    Column("fee_millicredits", BigInteger, nullable=False),
    Column("net_millicredits", BigInteger, nullable=False),
    Column("released_millicredits", BigInteger, nullable=False),
    Column("hold_sequence", Integer, nullable=False),
    Column("expires_at_ms", BigInteger, nullable=False),
    Column("closes_at_ms", BigInteger, nullable=True),
    Column("offer_envelope", Text, nullable=False),
    Column("acceptance_envelope", Text, nullable=False),
    Column("created_at_ms", BigInteger, nullable=False),
    Column("updated_at_ms", BigInteger, nullable=False),
)

metered_claims = Table(
    "exchange_metered_claims",
    metadata,
    Column("contract_id", Text, primary_key=True),
    Column("units", BigInteger, primary_key=True),
    Column("captured_millicredits", BigInteger, nullable=False),
    Column("fee_millicredits", BigInteger, nullable=False),
    Column("receipt_envelope", Text, nullable=False),
    Column("claimed_at_ms", BigInteger, nullable=False),
)

# From migration subscriptions_0001.
plans = Table(
    "exchange_plans",
    metadata,
    Column("plan_id", Text, primary_key=True),
    Column("provider_id", Text, nullable=False),
    Column("plan", Text, nullable=False),
    Column("capability", Text, nullable=False),
    Column("price_millicredits", BigInteger, nullable=False),
    Column("period_s", BigInteger, nullable=False),
    Column("trial_s", BigInteger, nullable=False),
    Column("description", Text, nullable=False),
    Column("active", Boolean, nullable=False),
    Column("created_at_ms", BigInteger, nullable=False),
    Column("updated_at_ms", BigInteger, nullable=False),
)

subscriptions = Table(
    "exchange_subscriptions",
    metadata,
    Column("subscription_id", Text, primary_key=True),
    Column("plan_id", Text, nullable=False),
    Column("plan", Text, nullable=False),
    Column("buyer_id", Text, nullable=False),
    Column("provider_id", Text, nullable=False),
    Column("capability", Text, nullable=False),
    Column("price_millicredits", BigInteger, nullable=False),
    Column("period_s", BigInteger, nullable=False),
    Column("state", Text, nullable=False),
    Column("periods_charged", Integer, nullable=False),
    Column("charged_millicredits", BigInteger, nullable=False),
    Column("period_started_at_ms", BigInteger, nullable=False),
    Column("period_ends_at_ms", BigInteger, nullable=False),
    Column("next_attempt_at_ms", BigInteger, nullable=True),
    Column("grace_ends_at_ms", BigInteger, nullable=True),
    Column("cancel_at_period_end", Boolean, nullable=False),
    Column("cancel_requested", Boolean, nullable=False),
    Column("failure", Text, nullable=False),
    Column("failed_attempts", Integer, nullable=False),
    Column("request_envelope", Text, nullable=False),
    Column("due_at_ms", BigInteger, nullable=True),
    Column("created_at_ms", BigInteger, nullable=False),
    Column("updated_at_ms", BigInteger, nullable=False),
)

subscription_charges = Table(
    "exchange_subscription_charges",
    metadata,
    Column("subscription_id", Text, primary_key=True),
    Column("period", Integer, primary_key=True),
    Column("amount_millicredits", BigInteger, nullable=False),
    Column("fee_millicredits", BigInteger, nullable=False),
    Column("net_millicredits", BigInteger, nullable=False),
    Column("charged_at_ms", BigInteger, nullable=False),
)

# From migration goods_0001: digital goods, their versions and licences.
goods_items = Table(
    "exchange_goods_items",
    metadata,
    Column("item_id", Text, primary_key=True),
    Column("provider_id", Text, nullable=False),
    Column("slug", Text, nullable=False),
    Column("title", Text, nullable=False),
    Column("description", Text, nullable=False),
    Column("artifact_kind", Text, nullable=False),
    Column("capability", Text, nullable=False),
    Column("price_millicredits", BigInteger, nullable=False),
    Column("updates_included", Integer, nullable=True),
    Column("terms", Text, nullable=False),
    Column("current_version", Integer, nullable=False),
    Column("ciphertext_sha256", Text, nullable=False),
    Column("size_bytes", BigInteger, nullable=False),
    Column("created_at_ms", BigInteger, nullable=False),
    Column("updated_at_ms", BigInteger, nullable=False),
)

goods_versions = Table(
    "exchange_goods_versions",
    metadata,
    Column("item_id", Text, primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("ciphertext_sha256", Text, nullable=False),
    Column("size_bytes", BigInteger, nullable=False),
    Column("chunk_count", Integer, nullable=False),
    Column("sealed_key", Text, nullable=False),
    Column("published_at_ms", BigInteger, nullable=False),
    Column("notified_through", Text, nullable=True),
    Column("notices_done", Boolean, nullable=False),
)

goods_licences = Table(
    "exchange_goods_licences",
    metadata,
    Column("licence_id", Text, primary_key=True),
    Column("item_id", Text, nullable=False),
    Column("buyer_id", Text, nullable=False),
    Column("provider_id", Text, nullable=False),
    Column("min_version", Integer, nullable=False),
    Column("max_version", Integer, nullable=True),
    Column("price_millicredits", BigInteger, nullable=False),
    Column("fee_millicredits", BigInteger, nullable=False),
    Column("net_millicredits", BigInteger, nullable=False),
    Column("fee_rate_bps", Integer, nullable=False),
    Column("terms", Text, nullable=False),
    Column("licence_envelope", Text, nullable=False),
    Column("created_at_ms", BigInteger, nullable=False),
)

# From migration fees_0001: the rates an operator set (a kind, or "category:<prefix>").
# Versions uploaded and not yet published (migration goods_0001).
goods_drafts = Table(
    "exchange_goods_drafts",
    metadata,
    Column("storage_key", Text, primary_key=True),
    Column("provider_id", Text, nullable=False),
    Column("created_at_ms", BigInteger, nullable=False),
)

fees = Table(
    "exchange_fees",
    metadata,
    Column("name", Text, primary_key=True),
    Column("rate_bps", Integer, nullable=False),
    Column("updated_at_ms", BigInteger, nullable=False),
    Column("updated_by", Text, nullable=False),
)

# From migration timers_0001: which worker runs each background pass, until when.
timer_leases = Table(
    "exchange_timer_leases",
    metadata,
    Column("job", Text, primary_key=True),
    Column("holder", Text, nullable=False),
    Column("acquired_at_ms", BigInteger, nullable=False),
    Column("expires_at_ms", BigInteger, nullable=False),
)
