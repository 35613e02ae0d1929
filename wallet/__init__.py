"""The wallet: a TigerBeetle-style double-entry ledger on SQLite or PostgreSQL.

Accounts keep four totals; transfers are immutable; escrow holds are pending
transfers that are posted, voided or expire exactly once; the transfer id is
the idempotency key; every amount is an integer. The pure core
(``wallet.core``, ``wallet.money``, ``wallet.validation``) decides, the SQL
adapter (``SqlLedger``) loads, locks and writes.

Throughput comes from group commit: ``BatchingLedger`` wraps a ``SqlLedger``
and applies many concurrent callers' batches in one database transaction,
each caller getting exactly the outcomes an unbatched call would give::

    async with BatchingLedger(SqlLedger(engine)) as batching:
        [outcome] = await batching.create_transfers([transfer])

Batching is for calls made without an outer transaction. A call with
``connection=`` (a unit of work, e.g. opening a contract and holding its
price atomically) bypasses the writer and joins the caller's transaction,
exactly like ``SqlLedger.create_transfers``. A call refused with
``LedgerOverloaded`` or ``LedgerClosed`` was not applied; one that gets
``LedgerTimeout`` (or any other ``LedgerUnavailable``) may have been: retry
it with the same transfer ids, which returns the committed outcomes (a retry
is always safe). See ``wallet.batching`` for the bounds (queue, group size,
the writer's timeout) and ``close()``, which drains the queue.
"""

from wallet.batching import BatchingLedger, WriterState
from wallet.database import HeldConnection, open_database, run_transaction
from wallet.errors import (
    InvariantViolation,
    LedgerClosed,
    LedgerConflict,
    LedgerOverloaded,
    LedgerRejected,
    LedgerTimeout,
    LedgerUnavailable,
    MigrationFailed,
    UnsupportedDatabase,
    ValueOutOfRange,
    WalletError,
)
from wallet.invariants import LedgerTotals, check_invariants, ledger_totals
from wallet.ledger import SqlLedger
from wallet.limits import (
    ACCOUNT_TOTAL_MAX,
    ACCOUNT_TRANSFERS_LIMIT_MAX,
    BATCH_SIZE_MAX,
    BATCHING_CALL_TIMEOUT_S_DEFAULT,
    BATCHING_GROUP_SIZE_DEFAULT,
    BATCHING_QUEUE_TRANSFERS_DEFAULT,
    ID_LENGTH_MAX,
    PENDING_TIMEOUT_S_MAX,
    TRANSFER_AMOUNT_MAX,
    USER_DATA_LENGTH_MAX,
)
from wallet.migrations import upgrade_schema
from wallet.model import (
    AccountBalance,
    AccountCode,
    AccountFlags,
    AccountOutcome,
    AccountResult,
    LedgerId,
    NewAccount,
    NewTransfer,
    PendingStatus,
    TransferCode,
    TransferFlags,
    TransferOutcome,
    TransferRecord,
    TransferResult,
)
from wallet.money import (
    BASIS_POINTS_PER_WHOLE,
    FEE_CATEGORIES_MAX,
    MILLICREDITS_PER_CREDIT,
    MILLICREDITS_PER_USD_CENT,
    SALE_FEE_KINDS,
    USD_CENTS_PER_CREDIT,
    FeeKind,
    FeeSchedule,
    fee_split,
)

__all__ = [
    "ACCOUNT_TOTAL_MAX",
    "ACCOUNT_TRANSFERS_LIMIT_MAX",
    "BASIS_POINTS_PER_WHOLE",
    "BATCHING_CALL_TIMEOUT_S_DEFAULT",
    "BATCHING_GROUP_SIZE_DEFAULT",
    "BATCHING_QUEUE_TRANSFERS_DEFAULT",
    "BATCH_SIZE_MAX",
    "FEE_CATEGORIES_MAX",
    "ID_LENGTH_MAX",
    "MILLICREDITS_PER_CREDIT",
    "MILLICREDITS_PER_USD_CENT",
    "PENDING_TIMEOUT_S_MAX",
    "SALE_FEE_KINDS",
    "TRANSFER_AMOUNT_MAX",
    "USD_CENTS_PER_CREDIT",
    "USER_DATA_LENGTH_MAX",
    "AccountBalance",
    "AccountCode",
    "AccountFlags",
    "AccountOutcome",
    "AccountResult",
    "BatchingLedger",
    "FeeKind",
    "FeeSchedule",
    "HeldConnection",
    "InvariantViolation",
    "LedgerClosed",
    "LedgerConflict",
    "LedgerId",
    "LedgerOverloaded",
    "LedgerRejected",
    "LedgerTimeout",
    "LedgerTotals",
    "LedgerUnavailable",
    "MigrationFailed",
    "NewAccount",
    "NewTransfer",
    "PendingStatus",
    "SqlLedger",
    "TransferCode",
    "TransferFlags",
    "TransferOutcome",
    "TransferRecord",
    "TransferResult",
    "UnsupportedDatabase",
    "ValueOutOfRange",
    "WalletError",
    "WriterState",
    "check_invariants",
    "fee_split",
    "ledger_totals",
    "open_database",
    "run_transaction",
    "upgrade_schema",
]
