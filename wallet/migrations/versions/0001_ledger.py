"""Ledger tables: accounts, append-only transfers, pending status, stored failures.

Revision ID: wallet_0001
Revises:
Create Date: 2026-11-21

Spelled out rather than imported from ``wallet.ledger_tables``: a migration is a
frozen snapshot, while the schema module follows the newest revision.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "wallet_0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = ("wallet",)
depends_on: str | Sequence[str] | None = None

_ID = sa.String(128)
_APPEND_ONLY_MESSAGE = "ledger_transfers is append-only"


def upgrade() -> None:
    _create_accounts()
    _create_transfers()
    _create_pending_transfers()
    _create_failed_transfers()
    if op.get_context().dialect.name == "postgresql":
        _create_postgresql_append_only_triggers()
    else:
        _create_sqlite_append_only_triggers()


def downgrade() -> None:
    if op.get_context().dialect.name == "postgresql":
        op.execute("DROP TRIGGER ledger_transfers_no_truncate ON ledger_transfers")
        op.execute("DROP TRIGGER ledger_transfers_no_update_or_delete ON ledger_transfers")
        op.execute("DROP FUNCTION ledger_transfers_append_only()")
    else:
        op.execute("DROP TRIGGER ledger_transfers_no_update")
        op.execute("DROP TRIGGER ledger_transfers_no_delete")
    op.drop_table("ledger_failed_transfers")
    op.drop_table("ledger_pending_transfers")
    op.drop_table("ledger_transfers")
    op.drop_table("ledger_accounts")


def _create_accounts() -> None:
    op.create_table(
        "ledger_accounts",
        sa.Column("id", _ID, primary_key=True),
        sa.Column("ledger", sa.Integer, nullable=False),
        sa.Column("code", sa.Integer, nullable=False),
        sa.Column("flags", sa.Integer, nullable=False),
        sa.Column("debits_pending", sa.BigInteger, nullable=False),
        sa.Column("debits_posted", sa.BigInteger, nullable=False),
        sa.Column("credits_pending", sa.BigInteger, nullable=False),
        sa.Column("credits_posted", sa.BigInteger, nullable=False),
        sa.Column("created_at_us", sa.BigInteger, nullable=False),
        sa.CheckConstraint("debits_pending >= 0", name="ledger_accounts_debits_pending_positive"),
        sa.CheckConstraint("debits_posted >= 0", name="ledger_accounts_debits_posted_positive"),
        sa.CheckConstraint("credits_pending >= 0", name="ledger_accounts_credits_pending_positive"),
        sa.CheckConstraint("credits_posted >= 0", name="ledger_accounts_credits_posted_positive"),
        # Flag 1 is DEBITS_MUST_NOT_EXCEED_CREDITS. CASE rather than OR, so the
        # sum is only computed where it cannot overflow.
        sa.CheckConstraint(
            "CASE WHEN (flags & 1) = 1 "
            "THEN debits_pending + debits_posted <= credits_posted ELSE TRUE END",
            name="ledger_accounts_debits_must_not_exceed_credits",
        ),
    )


def _create_transfers() -> None:
    op.create_table(
        "ledger_transfers",
        sa.Column("id", _ID, primary_key=True),
        sa.Column("debit_account_id", _ID, sa.ForeignKey("ledger_accounts.id"), nullable=False),
        sa.Column("credit_account_id", _ID, sa.ForeignKey("ledger_accounts.id"), nullable=False),
        sa.Column("amount", sa.BigInteger, nullable=False),
        sa.Column("ledger", sa.Integer, nullable=False),
        sa.Column("code", sa.Integer, nullable=False),
        sa.Column("flags", sa.Integer, nullable=False),
        sa.Column("pending_id", _ID, sa.ForeignKey("ledger_transfers.id"), nullable=True),
        sa.Column("timeout_s", sa.BigInteger, nullable=False),
        sa.Column("user_data", sa.String(128), nullable=False),
        sa.Column("timestamp_us", sa.BigInteger, nullable=False),
        sa.CheckConstraint("amount > 0", name="ledger_transfers_amount_positive"),
        sa.CheckConstraint(
            "debit_account_id <> credit_account_id", name="ledger_transfers_accounts_different"
        ),
        sa.CheckConstraint("timeout_s >= 0", name="ledger_transfers_timeout_not_negative"),
    )
    # A pending transfer is posted, voided or expires exactly once.
    op.create_index("ledger_transfers_pending_id", "ledger_transfers", ["pending_id"], unique=True)
    op.create_index(
        "ledger_transfers_by_debit_account",
        "ledger_transfers",
        ["debit_account_id", "timestamp_us"],
    )
    op.create_index(
        "ledger_transfers_by_credit_account",
        "ledger_transfers",
        ["credit_account_id", "timestamp_us"],
    )
    op.create_index("ledger_transfers_by_timestamp", "ledger_transfers", ["timestamp_us"])


def _create_pending_transfers() -> None:
    op.create_table(
        "ledger_pending_transfers",
        sa.Column("id", _ID, sa.ForeignKey("ledger_transfers.id"), primary_key=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("expires_at_us", sa.BigInteger, nullable=True),
        sa.CheckConstraint(
            "status IN ('pending', 'posted', 'voided', 'expired')",
            name="ledger_pending_transfers_status_known",
        ),
    )
    op.create_index(
        "ledger_pending_transfers_open_by_deadline",
        "ledger_pending_transfers",
        ["expires_at_us"],
        postgresql_where=sa.text("status = 'pending'"),
        sqlite_where=sa.text("status = 'pending'"),
    )


def _create_failed_transfers() -> None:
    op.create_table(
        "ledger_failed_transfers",
        sa.Column("id", _ID, primary_key=True),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("result", sa.String(64), nullable=False),
        sa.Column("timestamp_us", sa.BigInteger, nullable=False),
    )


def _create_postgresql_append_only_triggers() -> None:
    op.execute(
        f"""
        CREATE FUNCTION ledger_transfers_append_only() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION '{_APPEND_ONLY_MESSAGE}';
        END
        $$
        """
    )
    op.execute(
        """
        CREATE TRIGGER ledger_transfers_no_update_or_delete
        BEFORE UPDATE OR DELETE ON ledger_transfers
        FOR EACH ROW EXECUTE FUNCTION ledger_transfers_append_only()
        """
    )
    op.execute(
        """
        CREATE TRIGGER ledger_transfers_no_truncate
        BEFORE TRUNCATE ON ledger_transfers
        FOR EACH STATEMENT EXECUTE FUNCTION ledger_transfers_append_only()
        """
    )


def _create_sqlite_append_only_triggers() -> None:
    for event in ("update", "delete"):
        op.execute(
            f"""
            CREATE TRIGGER ledger_transfers_no_{event}
            BEFORE {event.upper()} ON ledger_transfers
            BEGIN
                SELECT RAISE(ABORT, '{_APPEND_ONLY_MESSAGE}');
            END
            """
        )
