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
    "QUERY_PARAMETERS_MAX",
    "SQLITE_BUSY_TIMEOUT_MS",
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

# A pending transfer (an escrow hold) may wait at most a year before it expires.
PENDING_TIMEOUT_S_MAX = 366 * 24 * 60 * 60

# Reads are bounded too.
ACCOUNT_LOOKUP_SIZE_MAX = 2 * BATCH_SIZE_MAX
ACCOUNT_TRANSFERS_LIMIT_DEFAULT = 100
ACCOUNT_TRANSFERS_LIMIT_MAX = 1000
EXPIRY_BATCH_SIZE_DEFAULT = 1000
EXPIRY_BATCH_SIZE_MAX = BATCH_SIZE_MAX

# Ids per ``IN (...)`` list: SQLite and asyncpg both cap bound parameters per
# statement (32766 and 32767), so long id lists are queried in chunks.
QUERY_PARAMETERS_MAX = 500

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
assert 0 < QUERY_PARAMETERS_MAX <= 32766 // 2
assert TRANSACTION_ATTEMPTS_MAX >= 1
assert 0 < TRANSACTION_RETRY_DELAY_BASE_MS <= TRANSACTION_RETRY_DELAY_MAX_MS
# SQLite waits for the write lock inside one statement; a statement timeout
# shorter than that wait would cut it short.
assert SQLITE_BUSY_TIMEOUT_MS <= DATABASE_STATEMENT_TIMEOUT_S * 1000
