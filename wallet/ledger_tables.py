"""The ledger's tables (SQLAlchemy Core), all prefixed ``ledger_``.

The migration in ``wallet/migrations/versions`` creates them (and the
append-only triggers, which Core cannot describe); these objects are what the
adapter queries with. A test checks that the two agree.

The database enforces what it can on its own, as a second line behind the
planner: non-negative totals, no overdrawn wallet, positive amounts, one
resolution per pending transfer (a unique index on ``pending_id``), and
transfers that can never be updated or deleted.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    text,
)

from wallet.limits import ID_LENGTH_MAX, USER_DATA_LENGTH_MAX

__all__ = [
    "ledger_accounts",
    "ledger_failed_transfers",
    "ledger_pending_transfers",
    "ledger_transfers",
    "metadata",
]

metadata = MetaData()

# Kept in step with the migration (0001_ledger.py), which spells them out.
OVERDRAFT_CHECK = (
    "CASE WHEN (flags & 1) = 1 THEN debits_pending + debits_posted <= credits_posted ELSE TRUE END"
)
PENDING_STATUS_CHECK = "status IN ('pending', 'posted', 'voided', 'expired')"

ledger_accounts = Table(
    "ledger_accounts",
    metadata,
    Column("id", String(ID_LENGTH_MAX), primary_key=True),
    Column("ledger", Integer, nullable=False),
    Column("code", Integer, nullable=False),
    Column("flags", Integer, nullable=False),
    Column("debits_pending", BigInteger, nullable=False),
    Column("debits_posted", BigInteger, nullable=False),
    Column("credits_pending", BigInteger, nullable=False),
    Column("credits_posted", BigInteger, nullable=False),
    Column("created_at_us", BigInteger, nullable=False),
    CheckConstraint("debits_pending >= 0", name="ledger_accounts_debits_pending_positive"),
    CheckConstraint("debits_posted >= 0", name="ledger_accounts_debits_posted_positive"),
    CheckConstraint("credits_pending >= 0", name="ledger_accounts_credits_pending_positive"),
    CheckConstraint("credits_posted >= 0", name="ledger_accounts_credits_posted_positive"),
    # CASE, not OR: SQL does not promise to short-circuit, and the sum of an
    # unlimited account's totals must never be computed where it could overflow.
    CheckConstraint(OVERDRAFT_CHECK, name="ledger_accounts_debits_must_not_exceed_credits"),
)

ledger_transfers = Table(
    "ledger_transfers",
    metadata,
    Column("id", String(ID_LENGTH_MAX), primary_key=True),
    Column(
        "debit_account_id", String(ID_LENGTH_MAX), ForeignKey(ledger_accounts.c.id), nullable=False
    ),
    Column(
        "credit_account_id",
        String(ID_LENGTH_MAX),
        ForeignKey(ledger_accounts.c.id),
        nullable=False,
    ),
    Column("amount", BigInteger, nullable=False),
    Column("ledger", Integer, nullable=False),
    Column("code", Integer, nullable=False),
    Column("flags", Integer, nullable=False),
    Column("pending_id", String(ID_LENGTH_MAX), ForeignKey("ledger_transfers.id"), nullable=True),
    Column("timeout_s", BigInteger, nullable=False),
    Column("user_data", String(USER_DATA_LENGTH_MAX), nullable=False),
    Column("timestamp_us", BigInteger, nullable=False),
    CheckConstraint("amount > 0", name="ledger_transfers_amount_positive"),
    CheckConstraint(
        "debit_account_id <> credit_account_id", name="ledger_transfers_accounts_different"
    ),
    CheckConstraint("timeout_s >= 0", name="ledger_transfers_timeout_not_negative"),
    # A pending transfer is posted, voided or expires exactly once.
    Index("ledger_transfers_pending_id", "pending_id", unique=True),
    Index("ledger_transfers_by_debit_account", "debit_account_id", "timestamp_us"),
    Index("ledger_transfers_by_credit_account", "credit_account_id", "timestamp_us"),
    Index("ledger_transfers_by_timestamp", "timestamp_us"),
)

# The only mutable part of a transfer: where a pending one stands.
ledger_pending_transfers = Table(
    "ledger_pending_transfers",
    metadata,
    Column("id", String(ID_LENGTH_MAX), ForeignKey(ledger_transfers.c.id), primary_key=True),
    Column("status", String(16), nullable=False),
    # NULL when the pending transfer never expires.
    Column("expires_at_us", BigInteger, nullable=True),
    CheckConstraint(PENDING_STATUS_CHECK, name="ledger_pending_transfers_status_known"),
    # The sweeper and every batch look for expired holds; only open ones matter.
    Index(
        "ledger_pending_transfers_open_by_deadline",
        "expires_at_us",
        postgresql_where=text("status = 'pending'"),
        sqlite_where=text("status = 'pending'"),
    ),
)

# Failures that depend on the ledger's state, kept so that a retry with the
# same id gets the first answer even after the state changed.
ledger_failed_transfers = Table(
    "ledger_failed_transfers",
    metadata,
    Column("id", String(ID_LENGTH_MAX), primary_key=True),
    Column("fingerprint", String(64), nullable=False),
    Column("result", String(64), nullable=False),
    Column("timestamp_us", BigInteger, nullable=False),
)
