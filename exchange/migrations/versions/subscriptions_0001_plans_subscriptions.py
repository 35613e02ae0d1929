"""Subscription plans, subscriptions and the charge of each period.

Revision ID: subscriptions_0001
Revises:
Create Date: 2026-12-05

A provider's plans (terms fixed once published), the buyers' subscriptions
and one row per charged period. The charges' primary key is the rule that
no period is charged twice; the checks repeat the money rules of
exchange/domain/subscription_rules.py so that no writer can break them.

Spelled out rather than imported from ``exchange``: a migration is a frozen
snapshot, while the code follows the newest revision.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "subscriptions_0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = ("subscriptions",)
depends_on: str | Sequence[str] | None = "exchange_0001"

_STATES = "('trialing', 'active', 'past_due', 'cancelling', 'ended', 'lapsed')"


def upgrade() -> None:
    op.create_table(
        "exchange_plans",
        sa.Column("plan_id", sa.Text, primary_key=True),
        sa.Column("provider_id", sa.Text, nullable=False),
        sa.Column("plan", sa.Text, nullable=False),
        sa.Column("capability", sa.Text, nullable=False),
        sa.Column("price_millicredits", sa.BigInteger, nullable=False),
        sa.Column("period_s", sa.BigInteger, nullable=False),
        sa.Column("trial_s", sa.BigInteger, nullable=False),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("active", sa.Boolean, nullable=False),
        sa.Column("created_at_ms", sa.BigInteger, nullable=False),
        sa.Column("updated_at_ms", sa.BigInteger, nullable=False),
        sa.UniqueConstraint("provider_id", "plan", name="plan_name_once_per_provider"),
        sa.CheckConstraint("price_millicredits > 0", name="plan_price_positive"),
        sa.CheckConstraint("period_s > 0 AND trial_s >= 0", name="plan_times_positive"),
    )
    op.create_index("exchange_plans_capability", "exchange_plans", ["capability", "active"])
    _create_subscriptions()
    op.create_table(
        "exchange_subscription_charges",
        sa.Column("subscription_id", sa.Text, nullable=False),
        sa.Column("period", sa.Integer, nullable=False),
        sa.Column("amount_millicredits", sa.BigInteger, nullable=False),
        sa.Column("fee_millicredits", sa.BigInteger, nullable=False),
        sa.Column("net_millicredits", sa.BigInteger, nullable=False),
        sa.Column("charged_at_ms", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("subscription_id", "period", name="subscription_period_once"),
        sa.CheckConstraint("period >= 1", name="subscription_charge_period_positive"),
        sa.CheckConstraint(
            "fee_millicredits >= 0 AND net_millicredits >= 0"
            " AND fee_millicredits + net_millicredits = amount_millicredits",
            name="subscription_charge_splits",
        ),
    )


def _create_subscriptions() -> None:
    op.create_table(
        "exchange_subscriptions",
        sa.Column("subscription_id", sa.Text, primary_key=True),
        sa.Column("plan_id", sa.Text, nullable=False),
        sa.Column("plan", sa.Text, nullable=False),
        sa.Column("buyer_id", sa.Text, nullable=False),
        sa.Column("provider_id", sa.Text, nullable=False),
        sa.Column("capability", sa.Text, nullable=False),
        sa.Column("price_millicredits", sa.BigInteger, nullable=False),
        sa.Column("period_s", sa.BigInteger, nullable=False),
        sa.Column("state", sa.Text, nullable=False),
        sa.Column("periods_charged", sa.Integer, nullable=False),
        sa.Column("charged_millicredits", sa.BigInteger, nullable=False),
        sa.Column("period_started_at_ms", sa.BigInteger, nullable=False),
        sa.Column("period_ends_at_ms", sa.BigInteger, nullable=False),
        sa.Column("next_attempt_at_ms", sa.BigInteger, nullable=True),
        sa.Column("grace_ends_at_ms", sa.BigInteger, nullable=True),
        sa.Column("cancel_at_period_end", sa.Boolean, nullable=False),
        sa.Column("cancel_requested", sa.Boolean, nullable=False),
        sa.Column("failure", sa.Text, nullable=False),
        sa.Column("failed_attempts", sa.Integer, nullable=False),
        sa.Column("request_envelope", sa.Text, nullable=False),
        sa.Column("due_at_ms", sa.BigInteger, nullable=True),
        sa.Column("created_at_ms", sa.BigInteger, nullable=False),
        sa.Column("updated_at_ms", sa.BigInteger, nullable=False),
        sa.CheckConstraint(f"state IN {_STATES}", name="subscription_state_known"),
        sa.CheckConstraint(
            "charged_millicredits = periods_charged * price_millicredits",
            name="subscription_charged_by_period",
        ),
        sa.CheckConstraint("buyer_id <> provider_id", name="subscription_not_self_dealt"),
    )
    op.create_index("exchange_subscriptions_due", "exchange_subscriptions", ["due_at_ms"])
    op.create_index(
        "exchange_subscriptions_buyer", "exchange_subscriptions", ["buyer_id", "subscription_id"]
    )
    op.create_index(
        "exchange_subscriptions_provider",
        "exchange_subscriptions",
        ["provider_id", "subscription_id"],
    )


def downgrade() -> None:
    op.drop_table("exchange_subscription_charges")
    op.drop_table("exchange_subscriptions")
    op.drop_table("exchange_plans")
