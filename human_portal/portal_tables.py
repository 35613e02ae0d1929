"""The portal's tables (SQLAlchemy Core), beside the wallet's and the exchange's.

The migration in ``human_portal/migrations/versions`` (branch ``portal``)
creates them; these objects are what the portal's repositories query with.
Money columns hold integers only: millicredits or US cents, as named.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Integer,
    MetaData,
    Table,
    Text,
    UniqueConstraint,
)

__all__ = [
    "agent_controls",
    "agent_links",
    "api_tokens",
    "approvals",
    "link_codes",
    "login_failures",
    "metadata",
    "operator_audit",
    "payment_disputes",
    "payouts",
    "sessions",
    "spending_refusals",
    "stripe_events",
    "topups",
    "users",
]

metadata = MetaData()

users = Table(
    "portal_users",
    metadata,
    Column("user_id", Text, primary_key=True),
    Column("email", Text, nullable=False, unique=True),
    Column("password_hash", Text, nullable=False),
    Column("role", Text, nullable=False),
    Column("stripe_account_id", Text, nullable=True),
    Column("stripe_payouts_enabled", Boolean, nullable=False),
    # Standing permission for the user's agents to request cash-outs themselves.
    Column("agent_cash_out_allowed", Boolean, nullable=False),
    Column("created_at_ms", BigInteger, nullable=False),
    Column("password_changed_at_ms", BigInteger, nullable=False),
    # Notices newer than this are unread; set when the user opens /notices.
    Column("notices_seen_at_ms", BigInteger, nullable=False, server_default="0"),
)

sessions = Table(
    "portal_sessions",
    metadata,
    Column("session_hash", Text, primary_key=True),
    Column("user_id", Text, nullable=False),
    Column("csrf_token", Text, nullable=False),
    Column("created_at_ms", BigInteger, nullable=False),
    Column("expires_at_ms", BigInteger, nullable=False),
)

login_failures = Table(
    "portal_login_failures",
    metadata,
    Column("failure_id", Integer, primary_key=True, autoincrement=True),
    Column("email", Text, nullable=False),
    Column("client_address", Text, nullable=False),
    Column("at_ms", BigInteger, nullable=False),
)

link_codes = Table(
    "portal_link_codes",
    metadata,
    Column("code_hash", Text, primary_key=True),
    Column("user_id", Text, nullable=False),
    Column("label", Text, nullable=False),
    Column("created_at_ms", BigInteger, nullable=False),
    Column("expires_at_ms", BigInteger, nullable=False),
    Column("used_at_ms", BigInteger, nullable=True),
    Column("used_by_agent_id", Text, nullable=True),
)

agent_links = Table(
    "portal_agent_links",
    metadata,
    Column("agent_id", Text, primary_key=True),
    Column("user_id", Text, nullable=False),
    Column("label", Text, nullable=False),
    Column("linked_at_ms", BigInteger, nullable=False),
)

agent_controls = Table(
    "portal_agent_controls",
    metadata,
    Column("agent_id", Text, primary_key=True),
    Column("daily_limit_millicredits", BigInteger, nullable=True),
    Column("contract_limit_millicredits", BigInteger, nullable=True),
    Column("approval_threshold_millicredits", BigInteger, nullable=True),
    Column("frozen_by_owner", Boolean, nullable=False),
    Column("frozen_by_operator", Boolean, nullable=False),
    Column("operator_freeze_reason", Text, nullable=False),
    Column("updated_at_ms", BigInteger, nullable=False),
)

approvals = Table(
    "portal_approvals",
    metadata,
    Column("contract_id", Text, primary_key=True),
    Column("agent_id", Text, nullable=False),
    Column("provider_id", Text, nullable=False),
    Column("capability", Text, nullable=False),
    Column("price_millicredits", BigInteger, nullable=False),
    Column("status", Text, nullable=False),
    Column("created_at_ms", BigInteger, nullable=False),
    Column("expires_at_ms", BigInteger, nullable=False),
    Column("decided_at_ms", BigInteger, nullable=True),
    Column("decided_by_user_id", Text, nullable=True),
    # What the agent asked to have done (its task, cut to APPROVAL_TASK_LENGTH_MAX).
    Column("task", Text, nullable=False, server_default=""),
)

topups = Table(
    "portal_topups",
    metadata,
    Column("topup_id", Text, primary_key=True),
    Column("user_id", Text, nullable=False),
    Column("agent_id", Text, nullable=False),
    Column("package_code", Text, nullable=False),
    Column("price_cents", BigInteger, nullable=False),
    Column("fee_cents", BigInteger, nullable=False),
    Column("total_cents", BigInteger, nullable=False),
    Column("credits_millicredits", BigInteger, nullable=False),
    Column("payment_intent_id", Text, nullable=True, unique=True),
    Column("status", Text, nullable=False),
    Column("refunded_cents", BigInteger, nullable=False),
    Column("disputed_cents", BigInteger, nullable=False),
    Column("reversed_cents", BigInteger, nullable=False),
    Column("reversed_fee_cents", BigInteger, nullable=False),
    Column("clawed_back_millicredits", BigInteger, nullable=False),
    Column("receivable_millicredits", BigInteger, nullable=False),
    Column("created_at_ms", BigInteger, nullable=False),
    Column("paid_at_ms", BigInteger, nullable=True),
)

stripe_events = Table(
    "portal_stripe_events",
    metadata,
    Column("event_id", Text, primary_key=True),
    Column("event_type", Text, nullable=False),
    Column("object_id", Text, nullable=False),
    Column("outcome", Text, nullable=False),
    Column("received_at_ms", BigInteger, nullable=False),
)

payment_disputes = Table(
    "portal_payment_disputes",
    metadata,
    Column("dispute_id", Text, primary_key=True),
    Column("topup_id", Text, nullable=False),
    Column("amount_cents", BigInteger, nullable=False),
    Column("created_at_ms", BigInteger, nullable=False),
)

payouts = Table(
    "portal_payouts",
    metadata,
    Column("payout_id", Text, primary_key=True),
    Column("user_id", Text, nullable=False),
    Column("agent_id", Text, nullable=False),
    Column("month", Text, nullable=False),
    Column("credits", BigInteger, nullable=False),
    Column("gross_cents", BigInteger, nullable=False),
    Column("fee_cents", BigInteger, nullable=False),
    Column("net_cents", BigInteger, nullable=False),
    Column("destination_account_id", Text, nullable=False),
    Column("status", Text, nullable=False),
    Column("requested_by", Text, nullable=False),
    Column("stripe_transfer_id", Text, nullable=True),
    Column("failure_reason", Text, nullable=True),
    Column("created_at_ms", BigInteger, nullable=False),
    Column("resolved_at_ms", BigInteger, nullable=True),
)

api_tokens = Table(
    "portal_api_tokens",
    metadata,
    Column("token_id", Text, primary_key=True),
    Column("user_id", Text, nullable=False),
    Column("name", Text, nullable=False),
    Column("token_hash", Text, nullable=False, unique=True),
    Column("created_at_ms", BigInteger, nullable=False),
    Column("last_used_at_ms", BigInteger, nullable=True),
    Column("revoked_at_ms", BigInteger, nullable=True),
)

operator_audit = Table(
    "portal_operator_audit",
    metadata,
    Column("audit_id", Integer, primary_key=True, autoincrement=True),
    Column("actor_user_id", Text, nullable=False),
    Column("action", Text, nullable=False),
    Column("subject_id", Text, nullable=False),
    Column("detail", Text, nullable=False),
    Column("at_ms", BigInteger, nullable=False),
)

# Purchases the exchange refused under the humans' controls (frozen, over a
# limit), kept so the human is told; one row per purchase and reason however
# often the agent retries, bounded in age and per agent (human_portal/budgets.py).
spending_refusals = Table(
    "portal_spending_refusals",
    metadata,
    # 64 bits on PostgreSQL (a conflicting insert still takes a number); SQLite's rowid.
    Column(
        "refusal_id",
        BigInteger().with_variant(Integer, "sqlite"),
        primary_key=True,
        autoincrement=True,
    ),
    Column("agent_id", Text, nullable=False),
    Column("purchase_id", Text, nullable=False),
    Column("code", Text, nullable=False),
    Column("capability", Text, nullable=False),
    Column("provider_id", Text, nullable=False),
    Column("price_millicredits", BigInteger, nullable=False),
    Column("cause", Text, nullable=False),
    Column("reason", Text, nullable=False),
    Column("at_ms", BigInteger, nullable=False),
    UniqueConstraint("agent_id", "purchase_id", "code", name="portal_spending_refusals_once"),
)
