"""Portal tables: users, sessions, links, budgets, approvals, top-ups, payouts, tokens.

Revision ID: portal_0001
Revises:
Create Date: 2026-11-21
"""

import sqlalchemy as sa
from alembic import op

revision = "portal_0001"
down_revision = None
branch_labels = ("portal",)
depends_on = None


def _user_id() -> "sa.Column[str]":
    return sa.Column(
        "user_id", sa.Text, sa.ForeignKey("portal_users.user_id"), nullable=False, index=True
    )


def upgrade() -> None:
    op.create_table(
        "portal_users",
        sa.Column("user_id", sa.Text, primary_key=True),
        sa.Column("email", sa.Text, nullable=False, unique=True),
        sa.Column("password_hash", sa.Text, nullable=False),
        sa.Column("role", sa.Text, nullable=False),
        sa.Column("stripe_account_id", sa.Text, nullable=True, unique=True),
        sa.Column("stripe_payouts_enabled", sa.Boolean, nullable=False),
        sa.Column("agent_cash_out_allowed", sa.Boolean, nullable=False),
        sa.Column("created_at_ms", sa.BigInteger, nullable=False),
        sa.Column("password_changed_at_ms", sa.BigInteger, nullable=False),
        sa.CheckConstraint("role IN ('user', 'operator')", name="portal_user_role_known"),
    )
    op.create_table(
        "portal_sessions",
        sa.Column("session_hash", sa.Text, primary_key=True),
        _user_id(),
        sa.Column("csrf_token", sa.Text, nullable=False),
        sa.Column("created_at_ms", sa.BigInteger, nullable=False),
        sa.Column("expires_at_ms", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "portal_login_failures",
        sa.Column("failure_id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("email", sa.Text, nullable=False),
        sa.Column("client_address", sa.Text, nullable=False),
        sa.Column("at_ms", sa.BigInteger, nullable=False),
    )
    op.create_index("portal_login_failures_by_email", "portal_login_failures", ["email", "at_ms"])
    op.create_index(
        "portal_login_failures_by_address", "portal_login_failures", ["client_address", "at_ms"]
    )
    op.create_table(
        "portal_link_codes",
        sa.Column("code_hash", sa.Text, primary_key=True),
        _user_id(),
        sa.Column("label", sa.Text, nullable=False),
        sa.Column("created_at_ms", sa.BigInteger, nullable=False),
        sa.Column("expires_at_ms", sa.BigInteger, nullable=False),
        sa.Column("used_at_ms", sa.BigInteger, nullable=True),
        sa.Column("used_by_agent_id", sa.Text, nullable=True),
    )
    op.create_table(
        "portal_agent_links",
        sa.Column("agent_id", sa.Text, primary_key=True),
        _user_id(),
        sa.Column("label", sa.Text, nullable=False),
        sa.Column("linked_at_ms", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "portal_agent_controls",
        sa.Column("agent_id", sa.Text, primary_key=True),
        sa.Column("daily_limit_millicredits", sa.BigInteger, nullable=True),
        sa.Column("contract_limit_millicredits", sa.BigInteger, nullable=True),
        sa.Column("approval_threshold_millicredits", sa.BigInteger, nullable=True),
        sa.Column("frozen_by_owner", sa.Boolean, nullable=False),
        sa.Column("frozen_by_operator", sa.Boolean, nullable=False),
        sa.Column("operator_freeze_reason", sa.Text, nullable=False),
        sa.Column("updated_at_ms", sa.BigInteger, nullable=False),
        *(
            sa.CheckConstraint(
                f"{column} IS NULL OR {column} > 0", name=f"portal_{column}_positive"
            )
            for column in (
                "daily_limit_millicredits",
                "contract_limit_millicredits",
                "approval_threshold_millicredits",
            )
        ),
    )
    op.create_table(
        "portal_approvals",
        sa.Column("contract_id", sa.Text, primary_key=True),
        sa.Column("agent_id", sa.Text, nullable=False, index=True),
        sa.Column("provider_id", sa.Text, nullable=False),
        sa.Column("capability", sa.Text, nullable=False),
        sa.Column("price_millicredits", sa.BigInteger, nullable=False),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("created_at_ms", sa.BigInteger, nullable=False),
        sa.Column("expires_at_ms", sa.BigInteger, nullable=False),
        sa.Column("decided_at_ms", sa.BigInteger, nullable=True),
        sa.Column("decided_by_user_id", sa.Text, nullable=True),
        sa.CheckConstraint("price_millicredits > 0", name="portal_approval_price_positive"),
        sa.CheckConstraint(
            "status IN ('pending', 'approved', 'rejected')", name="portal_approval_status_known"
        ),
    )
    op.create_table(
        "portal_topups",
        sa.Column("topup_id", sa.Text, primary_key=True),
        _user_id(),
        sa.Column("agent_id", sa.Text, nullable=False, index=True),
        sa.Column("package_code", sa.Text, nullable=False),
        sa.Column("price_cents", sa.BigInteger, nullable=False),
        sa.Column("fee_cents", sa.BigInteger, nullable=False),
        sa.Column("total_cents", sa.BigInteger, nullable=False),
        sa.Column("credits_millicredits", sa.BigInteger, nullable=False),
        sa.Column("payment_intent_id", sa.Text, nullable=True, unique=True),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("refunded_cents", sa.BigInteger, nullable=False),
        sa.Column("disputed_cents", sa.BigInteger, nullable=False),
        sa.Column("reversed_cents", sa.BigInteger, nullable=False),
        sa.Column("reversed_fee_cents", sa.BigInteger, nullable=False),
        sa.Column("clawed_back_millicredits", sa.BigInteger, nullable=False),
        sa.Column("receivable_millicredits", sa.BigInteger, nullable=False),
        sa.Column("created_at_ms", sa.BigInteger, nullable=False),
        sa.Column("paid_at_ms", sa.BigInteger, nullable=True),
        sa.CheckConstraint("price_cents > 0 AND fee_cents >= 0", name="portal_topup_price"),
        sa.CheckConstraint("total_cents = price_cents + fee_cents", name="portal_topup_total"),
        sa.CheckConstraint("credits_millicredits > 0", name="portal_topup_credits_positive"),
        sa.CheckConstraint(
            "status IN ('created', 'paid', 'canceled')", name="portal_topup_status_known"
        ),
        sa.CheckConstraint(
            "refunded_cents >= 0 AND disputed_cents >= 0 AND reversed_fee_cents >= 0"
            " AND reversed_cents >= 0 AND reversed_cents <= total_cents"
            " AND reversed_fee_cents <= fee_cents",
            name="portal_topup_reversals_bounded",
        ),
        sa.CheckConstraint(
            "clawed_back_millicredits >= 0 AND receivable_millicredits >= 0"
            " AND clawed_back_millicredits + receivable_millicredits <= credits_millicredits",
            name="portal_topup_clawback_bounded",
        ),
    )
    op.create_table(
        "portal_stripe_events",
        sa.Column("event_id", sa.Text, primary_key=True),
        sa.Column("event_type", sa.Text, nullable=False),
        sa.Column("object_id", sa.Text, nullable=False),
        sa.Column("outcome", sa.Text, nullable=False),
        sa.Column("received_at_ms", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "portal_payment_disputes",
        sa.Column("dispute_id", sa.Text, primary_key=True),
        sa.Column(
            "topup_id", sa.Text, sa.ForeignKey("portal_topups.topup_id"), nullable=False, index=True
        ),
        sa.Column("amount_cents", sa.BigInteger, nullable=False),
        sa.Column("created_at_ms", sa.BigInteger, nullable=False),
        sa.CheckConstraint("amount_cents > 0", name="portal_dispute_amount_positive"),
    )
    op.create_table(
        "portal_payouts",
        sa.Column("payout_id", sa.Text, primary_key=True),
        _user_id(),
        sa.Column("agent_id", sa.Text, nullable=False),
        sa.Column("month", sa.Text, nullable=False),
        sa.Column("credits", sa.BigInteger, nullable=False),
        sa.Column("gross_cents", sa.BigInteger, nullable=False),
        sa.Column("fee_cents", sa.BigInteger, nullable=False),
        sa.Column("net_cents", sa.BigInteger, nullable=False),
        sa.Column("destination_account_id", sa.Text, nullable=False),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("requested_by", sa.Text, nullable=False),
        sa.Column("stripe_transfer_id", sa.Text, nullable=True),
        sa.Column("failure_reason", sa.Text, nullable=True),
        sa.Column("created_at_ms", sa.BigInteger, nullable=False),
        sa.Column("resolved_at_ms", sa.BigInteger, nullable=True),
        sa.CheckConstraint("credits > 0", name="portal_payout_credits_positive"),
        sa.CheckConstraint(
            "fee_cents >= 0 AND net_cents > 0 AND fee_cents + net_cents = gross_cents",
            name="portal_payout_adds_up",
        ),
        sa.CheckConstraint(
            "status IN ('pending', 'paid', 'failed')", name="portal_payout_status_known"
        ),
    )
    op.create_index("portal_payouts_by_agent_month", "portal_payouts", ["agent_id", "month"])
    op.create_table(
        "portal_api_tokens",
        sa.Column("token_id", sa.Text, primary_key=True),
        _user_id(),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("token_hash", sa.Text, nullable=False, unique=True),
        sa.Column("created_at_ms", sa.BigInteger, nullable=False),
        sa.Column("last_used_at_ms", sa.BigInteger, nullable=True),
        sa.Column("revoked_at_ms", sa.BigInteger, nullable=True),
    )
    op.create_table(
        "portal_operator_audit",
        sa.Column("audit_id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("actor_user_id", sa.Text, nullable=False),
        sa.Column("action", sa.Text, nullable=False),
        sa.Column("subject_id", sa.Text, nullable=False),
        sa.Column("detail", sa.Text, nullable=False),
        sa.Column("at_ms", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    for table in (
        "portal_operator_audit",
        "portal_api_tokens",
        "portal_payouts",
        "portal_payment_disputes",
        "portal_stripe_events",
        "portal_topups",
        "portal_approvals",
        "portal_agent_controls",
        "portal_agent_links",
        "portal_link_codes",
        "portal_login_failures",
        "portal_sessions",
        "portal_users",
    ):
        op.drop_table(table)
