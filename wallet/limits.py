"""Every limit of the wallet, named in one place.

The relations between the limits are asserted at import time, so that raising
one limit without the others fails here instead of overflowing a column in
production.
"""

from __future__ import annotations

__all__ = [
    "ACCOUNT_LOOKUP_SIZE_MAX",
    "ACCOUNT_TOTAL_MAX",
    "ACCOUNT_TRANSFERS_LIMIT_DEFAULT",
    "ACCOUNT_TRANSFERS_LIMIT_MAX",
    "BATCHING_CALL_TIMEOUT_S_DEFAULT",
    "BATCHING_CALL_TIMEOUT_S_MAX",
    "BATCHING_CLOSE_TIMEOUT_S_DEFAULT",
    "BATCHING_GROUP_SIZE_DEFAULT",
    "BATCHING_QUEUE_TRANSFERS_DEFAULT",
    "BATCHING_QUEUE_TRANSFERS_MAX",
    "BATCHING_WAITING_CALLS_MAX",
    "BATCH_SIZE_MAX",
    "DATABASE_CONNECT_TIMEOUT_S",
    "DATABASE_POOL_OVERFLOW_MAX",
    "DATABASE_POOL_SIZE",
    "DATABASE_POOL_TIMEOUT_S",
    "DATABASE_STATEMENT_TIMEOUT_S",
    "EXPIRY_BATCH_SIZE_DEFAULT",
    "EXPIRY_BATCH_SIZE_MAX",
    "ID_LENGTH_MAX",
    "PENDING_TIMEOUT_S_MAX",
    "SQLITE_BUSY_TIMEOUT_MS",
    "SQLITE_CHECKPOINT_COMMITS",
    "SQLITE_CHECKPOINT_ROWS",
    "TIMESTAMP_US_MAX",
    "TRANSACTION_ATTEMPTS_MAX",
    "TRANSACTION_RETRY_DELAY_BASE_MS",
    "TRANSACTION_RETRY_DELAY_MAX_MS",
    "TRANSFER_AMOUNT_MAX",
    "USER_DATA_LENGTH_MAX",
]

# Text ids of accounts and transfers, and the free-form user data of a
# transfer. 128 characters fit an agent id (56), a prefix and a contract id.
ID_LENGTH_MAX = 128
USER_DATA_LENGTH_MAX = 128

# Every account total is a PostgreSQL BIGINT, so it must fit a signed 64-bit
# integer; SQLite's INTEGER has the same range.
ACCOUNT_TOTAL_MAX = 2**63 - 1
TIMESTAMP_US_MAX = 2**63 - 1

# One transfer moves at most 10^15 millicredits (10^12 credits, $10^11).
TRANSFER_AMOUNT_MAX = 10**15

# TigerBeetle's batch size: one database transaction applies at most this many
# transfers (or creates this many accounts).
BATCH_SIZE_MAX = 8190

# The batching writer (``wallet.batching``). One database transaction (a
# group) applies many callers' batches; a group holds at most
# ``BATCH_SIZE_MAX`` transfers, so it is never larger than one maximal
# unbatched call. The default is where throughput stops paying for latency
# (bench/ledger.py, SQLite, 4,096 to 8,192 callers): 2,048 gave about 21,000
# transfers/s, 4,096 about 25,000-27,000, 8,190 only 4 % more than 4,096
# while a full group takes twice as long to answer.
BATCHING_GROUP_SIZE_DEFAULT = 4096
# Transfers waiting for the writer; a caller waits for room (within its
# timeout) and is then refused with ``LedgerOverloaded``.
BATCHING_QUEUE_TRANSFERS_DEFAULT = 4 * BATCH_SIZE_MAX
BATCHING_QUEUE_TRANSFERS_MAX = 64 * BATCH_SIZE_MAX
# Calls waiting for room; beyond this a call is refused at once.
BATCHING_WAITING_CALLS_MAX = 10_000
# How long one call may wait in all (for room in the queue, then for its
# reply), and how long closing may take to drain the queue.
BATCHING_CALL_TIMEOUT_S_DEFAULT = 30
BATCHING_CALL_TIMEOUT_S_MAX = 600
BATCHING_CLOSE_TIMEOUT_S_DEFAULT = 60

# A pending transfer (an escrow hold) may wait at most a year before it expires.
PENDING_TIMEOUT_S_MAX = 366 * 24 * 60 * 60

# Reads are bounded too.
ACCOUNT_LOOKUP_SIZE_MAX = 2 * BATCH_SIZE_MAX
ACCOUNT_TRANSFERS_LIMIT_DEFAULT = 100
ACCOUNT_TRANSFERS_LIMIT_MAX = 1000
EXPIRY_BATCH_SIZE_DEFAULT = 1000
EXPIRY_BATCH_SIZE_MAX = BATCH_SIZE_MAX

# Retrying a transaction that lost a race (PostgreSQL deadlock or
# serialization failure, SQLite busy): attempts and the jittered backoff.
TRANSACTION_ATTEMPTS_MAX = 8
TRANSACTION_RETRY_DELAY_BASE_MS = 5
TRANSACTION_RETRY_DELAY_MAX_MS = 250

# Connections.
DATABASE_CONNECT_TIMEOUT_S = 10
DATABASE_STATEMENT_TIMEOUT_S = 30
DATABASE_POOL_SIZE = 10
DATABASE_POOL_OVERFLOW_MAX = 10
DATABASE_POOL_TIMEOUT_S = 30
SQLITE_BUSY_TIMEOUT_MS = 10_000
# A connection asks for the WAL to be copied back into the database (a
# checkpoint: it may fsync; it runs in a thread of its own and nobody waits
# for it) after this many commits or changed rows, whichever comes first;
# SQLite's own checkpoint after 1,000 pages would run inside a COMMIT, which
# runs on the event loop's thread (wallet.sqlite_driver).
SQLITE_CHECKPOINT_COMMITS = 64
SQLITE_CHECKPOINT_ROWS = 2_000

assert ID_LENGTH_MAX > 0
assert USER_DATA_LENGTH_MAX > 0
assert 0 < TRANSFER_AMOUNT_MAX < ACCOUNT_TOTAL_MAX
# A full batch of maximal transfers cannot overflow an empty account total.
assert BATCH_SIZE_MAX * TRANSFER_AMOUNT_MAX <= ACCOUNT_TOTAL_MAX
# An expiry deadline (a timestamp plus the longest timeout) fits a BIGINT for
# any timestamp before the year 292,000.
assert PENDING_TIMEOUT_S_MAX * 1_000_000 < TIMESTAMP_US_MAX // 2
# A batch names at most two accounts per transfer.
assert ACCOUNT_LOOKUP_SIZE_MAX >= 2 * BATCH_SIZE_MAX
assert 0 < ACCOUNT_TRANSFERS_LIMIT_DEFAULT <= ACCOUNT_TRANSFERS_LIMIT_MAX
assert 0 < EXPIRY_BATCH_SIZE_DEFAULT <= EXPIRY_BATCH_SIZE_MAX <= BATCH_SIZE_MAX
assert TRANSACTION_ATTEMPTS_MAX >= 1
assert 0 < TRANSACTION_RETRY_DELAY_BASE_MS <= TRANSACTION_RETRY_DELAY_MAX_MS
assert 0 < BATCHING_GROUP_SIZE_DEFAULT <= BATCH_SIZE_MAX
# Any single call (at most ``BATCH_SIZE_MAX`` transfers) fits an empty queue.
assert BATCH_SIZE_MAX <= BATCHING_QUEUE_TRANSFERS_DEFAULT <= BATCHING_QUEUE_TRANSFERS_MAX
assert BATCHING_WAITING_CALLS_MAX > 0
# By default a call waits at least as long as one slow statement of its group
# may take, so a slow but healthy database does not time callers out.
assert DATABASE_STATEMENT_TIMEOUT_S <= BATCHING_CALL_TIMEOUT_S_DEFAULT
assert BATCHING_CALL_TIMEOUT_S_DEFAULT <= BATCHING_CALL_TIMEOUT_S_MAX
assert BATCHING_CALL_TIMEOUT_S_DEFAULT <= BATCHING_CLOSE_TIMEOUT_S_DEFAULT
# SQLite waits for the write lock inside one statement; a statement timeout
# shorter than that wait would cut it short.
assert SQLITE_BUSY_TIMEOUT_MS <= DATABASE_STATEMENT_TIMEOUT_S * 1000
