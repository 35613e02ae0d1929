"""The ledger's SQL: loading what the planner needs and writing its plan.

Every function takes a connection inside an already-begun transaction and
works on SQLite and PostgreSQL alike. Rows are checked right after reading.
"""

from __future__ import annotations

import functools
from collections.abc import Collection, Sequence
from typing import Any

from sqlalchemy import (
    BigInteger,
    Insert,
    and_,
    bindparam,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from wallet.core import (
    BatchPlan,
    PendingHold,
    StoredOutcome,
    assert_account_valid,
)
from wallet.ledger_tables import (
    ledger_accounts,
    ledger_failed_transfers,
    ledger_pending_transfers,
    ledger_transfers,
)
from wallet.model import (
    AccountBalance,
    AccountCode,
    AccountFlags,
    LedgerId,
    NewAccount,
    PendingStatus,
    TransferCode,
    TransferFlags,
    TransferRecord,
    TransferResult,
)
from wallet.prepared_statements import PreparedStatement, among, id_list
from wallet.validation import transfer_fingerprint

__all__ = [
    "insert_accounts",
    "select_account_definitions",
    "select_account_transfers",
    "select_accounts",
    "select_expired_holds",
    "select_holds",
    "select_last_timestamp",
    "select_stored_outcomes",
    "write_plan",
]

_accounts = ledger_accounts.c
_transfers = ledger_transfers.c
_pending = ledger_pending_transfers.c
_failed = ledger_failed_transfers.c


# Enum members by value: the Enum machinery costs about half a microsecond
# per lookup, and rows are decoded by the thousand per batch. Bounded, as
# only corrupt rows could hold values outside the enumerations.
_ledger_id = functools.lru_cache(maxsize=64)(LedgerId)
_account_code = functools.lru_cache(maxsize=64)(AccountCode)
_account_flags = functools.lru_cache(maxsize=64)(AccountFlags)

_ACCOUNT_COLUMNS = (
    _accounts.id,
    _accounts.ledger,
    _accounts.code,
    _accounts.flags,
    _accounts.debits_pending,
    _accounts.debits_posted,
    _accounts.credits_pending,
    _accounts.credits_posted,
)


def _account_from_row(row: Sequence[Any]) -> AccountBalance:
    """A row of ``_ACCOUNT_COLUMNS``, unpacked by position (faster than by name)."""
    (
        account_id,
        ledger,
        code,
        flags,
        debits_pending,
        debits_posted,
        credits_pending,
        credits_posted,
    ) = row
    account = AccountBalance(
        id=account_id,
        ledger=_ledger_id(ledger),
        code=_account_code(code),
        flags=_account_flags(flags),
        debits_pending=debits_pending,
        debits_posted=debits_posted,
        credits_pending=credits_pending,
        credits_posted=credits_posted,
    )
    assert_account_valid(account)
    return account


async def select_accounts(
    connection: AsyncConnection, ids: Collection[str], /, *, lock: bool
) -> dict[str, AccountBalance]:
    """The accounts that exist among ``ids``; with ``lock``, row-locked in id order.

    SQLite ignores ``FOR UPDATE``: its ``BEGIN IMMEDIATE`` already holds the
    database's only write lock.
    """
    query = _select_locked_accounts if lock else _select_accounts
    accounts: dict[str, AccountBalance] = {}
    for row in await query.rows(connection, (id_list(connection, ids),)):
        account = _account_from_row(row)
        accounts[account.id] = account
    return accounts


def _accounts_query(dialect: str, /) -> Any:
    query = select(*_ACCOUNT_COLUMNS).where(among(dialect, _accounts.id, "ids"))
    # In id order, so that PostgreSQL takes the row locks in id order.
    return query.order_by(_accounts.id)


_select_accounts = PreparedStatement(_accounts_query, ("ids",))
_select_locked_accounts = PreparedStatement(
    lambda dialect: _accounts_query(dialect).with_for_update(), ("ids",)
)


_select_account_definitions = PreparedStatement(
    lambda dialect: select(_accounts.id, _accounts.ledger, _accounts.code, _accounts.flags).where(
        among(dialect, _accounts.id, "ids")
    ),
    ("ids",),
)


async def select_account_definitions(
    connection: AsyncConnection, ids: Collection[str], /
) -> dict[str, NewAccount]:
    definitions: dict[str, NewAccount] = {}
    rows = await _select_account_definitions.rows(connection, (id_list(connection, ids),))
    for account_id, ledger, code, flags in rows:
        definitions[account_id] = NewAccount(
            id=account_id,
            ledger=LedgerId(ledger),
            code=AccountCode(code),
            flags=AccountFlags(flags),
        )
    return definitions


def _insert_ignoring_duplicates(dialect: str, /) -> Insert:
    # Two workers may create the same account at once; the loser reads the
    # winner's row instead of aborting its transaction.
    if dialect == "postgresql":
        return postgresql.insert(ledger_accounts).on_conflict_do_nothing(index_elements=["id"])
    return sqlite.insert(ledger_accounts).on_conflict_do_nothing(index_elements=["id"])


def _new_account_row(account: NewAccount, created_at_us: int) -> tuple[Any, ...]:
    """The values of every ``ledger_accounts`` column, in table order: totals start at 0."""
    definition = (account.id, int(account.ledger), int(account.code), int(account.flags))
    return (*definition, 0, 0, 0, 0, created_at_us)


_insert_accounts = PreparedStatement(
    _insert_ignoring_duplicates, tuple(column.name for column in ledger_accounts.columns)
)


async def insert_accounts(
    connection: AsyncConnection, accounts: Sequence[NewAccount], /, *, created_at_us: int
) -> None:
    if not accounts:
        return
    # In id order, like every lock the ledger takes: two workers creating
    # overlapping sets of accounts then wait for each other instead of deadlocking.
    rows = [
        _new_account_row(account, created_at_us)
        for account in sorted(accounts, key=lambda account: account.id)
    ]
    await _insert_accounts.run_many(connection, rows)


def _holds_query() -> Any:
    return select(
        _pending.id,
        _transfers.debit_account_id,
        _transfers.credit_account_id,
        _transfers.amount,
        _transfers.ledger,
        _pending.status,
        _pending.expires_at_us,
        _transfers.user_data,
    ).select_from(ledger_pending_transfers.join(ledger_transfers, _transfers.id == _pending.id))


def _hold_from_row(row: Sequence[Any]) -> PendingHold:
    """A row of :func:`_holds_query`'s columns, by position."""
    hold_id, debit_id, credit_id, amount, ledger, status, expires_at_us, user_data = row
    return PendingHold(
        id=hold_id,
        debit_account_id=debit_id,
        credit_account_id=credit_id,
        amount=amount,
        ledger=LedgerId(ledger),
        status=PendingStatus(status),
        expires_at_us=expires_at_us,
        user_data=user_data,
    )


async def select_holds(
    connection: AsyncConnection, ids: Collection[str], /
) -> dict[str, PendingHold]:
    if not ids:
        return {}
    rows = await _select_holds.rows(connection, (id_list(connection, ids),))
    return {row[0]: _hold_from_row(row) for row in rows}


_select_holds = PreparedStatement(
    lambda dialect: _holds_query().where(among(dialect, _pending.id, "ids")), ("ids",)
)


def _expired_holds_on_accounts_query(dialect: str, /) -> Any:
    """Parameters ``now_us`` and ``account_ids``; see :func:`_expired_holds_query`."""
    touching = or_(
        among(dialect, _transfers.debit_account_id, "account_ids"),
        among(dialect, _transfers.credit_account_id, "account_ids"),
    )
    return _expired_holds_query(bindparam("now_us", type_=BigInteger)).where(touching)


_select_expired_holds_on_accounts = PreparedStatement(
    _expired_holds_on_accounts_query, ("now_us", "account_ids")
)


def _open_past_deadline(now_us: Any) -> Any:
    """The condition of an open hold past its deadline: the rows of the partial index."""
    return and_(_pending.status == PendingStatus.PENDING.value, _pending.expires_at_us <= now_us)


# Whether any open hold is past its deadline: one probe of the partial index.
_any_hold_expired = PreparedStatement(
    lambda _dialect: (
        select(_pending.id)
        .where(_open_past_deadline(bindparam("now_us", type_=BigInteger)))
        .limit(1)
    ),
    ("now_us",),
)


def _expired_holds_query(now_us: Any) -> Any:
    """The open holds past their deadline, to be filtered by account.

    They come from the partial index first, then their transfers by primary
    key, then the account filter. Left to itself SQLite starts from the
    account indexes instead, which reads the whole history of every account
    named (measured: a batch's cost grew with the ledger's age). A
    materialized CTE fixes the order on both databases; its cost is the
    number of expired holds not yet voided, which running the sweeper
    (``SqlLedger.expire_pending``) keeps small.
    """
    deadline_passed = (
        select(_pending.id, _pending.status, _pending.expires_at_us)
        .where(_open_past_deadline(now_us))
        .cte("expired_holds")
        .prefix_with("MATERIALIZED")
    )
    return select(
        deadline_passed.c.id,
        _transfers.debit_account_id,
        _transfers.credit_account_id,
        _transfers.amount,
        _transfers.ledger,
        deadline_passed.c.status,
        deadline_passed.c.expires_at_us,
        _transfers.user_data,
    ).select_from(deadline_passed.join(ledger_transfers, _transfers.id == deadline_passed.c.id))


async def select_expired_holds(
    connection: AsyncConnection,
    /,
    *,
    now_us: int,
    account_ids: Collection[str] | None = None,
    limit: int | None = None,
) -> list[PendingHold]:
    """Holds past their deadline but not yet voided: on ``account_ids``, or any
    (oldest deadline first, at most ``limit``)."""
    if account_ids is None:
        assert limit is not None and limit > 0
        query = (
            _holds_query()
            .where(_open_past_deadline(now_us))
            .order_by(_pending.expires_at_us, _pending.id)
            .limit(limit)
        )
        return [_hold_from_row(row) for row in await connection.execute(query)]
    if not account_ids:
        return []
    # Usually no hold is expired (the sweeper voids them), and the probe
    # costs a fraction of the lookup that filters them by account.
    if not await _any_hold_expired.rows(connection, (now_us,)):
        return []
    values = (now_us, id_list(connection, account_ids))
    rows = await _select_expired_holds_on_accounts.rows(connection, values)
    return [_hold_from_row(row) for row in rows]


def _record_from_row(row: Sequence[Any]) -> TransferRecord:
    """A row of ``ledger_transfers`` (its columns in table order, ``_TRANSFER_COLUMNS``)."""
    (
        transfer_id,
        debit_account_id,
        credit_account_id,
        amount,
        ledger,
        code,
        flags,
        pending_id,
        timeout_s,
        user_data,
        timestamp_us,
    ) = row
    record = TransferRecord(
        id=transfer_id,
        debit_account_id=debit_account_id,
        credit_account_id=credit_account_id,
        amount=amount,
        ledger=LedgerId(ledger),
        code=TransferCode(code),
        flags=TransferFlags(flags),
        pending_id=pending_id,
        timeout_s=timeout_s,
        user_data=user_data,
        timestamp_us=timestamp_us,
    )
    assert record.amount > 0 and record.timestamp_us > 0
    return record


async def select_stored_outcomes(
    connection: AsyncConnection, ids: Collection[str], /
) -> dict[str, StoredOutcome]:
    """What was decided earlier for ``ids``: applied transfers and stored failures."""
    outcomes: dict[str, StoredOutcome] = {}
    if not ids:
        return outcomes
    values = (id_list(connection, ids),)
    for row in await _select_stored_transfers.rows(connection, values):
        record = _record_from_row(row)
        fingerprint = transfer_fingerprint(record.as_new_transfer())
        outcomes[record.id] = StoredOutcome(TransferResult.OK, fingerprint, record.timestamp_us)
    for failure_id, fingerprint, result, timestamp_us in await _select_stored_failures.rows(
        connection, values
    ):
        assert failure_id not in outcomes, "an id is either applied or failed"
        outcomes[failure_id] = StoredOutcome(TransferResult(result), fingerprint, timestamp_us)
    return outcomes


_select_stored_transfers = PreparedStatement(
    lambda dialect: select(ledger_transfers).where(among(dialect, _transfers.id, "ids")), ("ids",)
)
_select_stored_failures = PreparedStatement(
    lambda dialect: select(
        _failed.id, _failed.fingerprint, _failed.result, _failed.timestamp_us
    ).where(among(dialect, _failed.id, "ids")),
    ("ids",),
)
_select_last_timestamp = PreparedStatement(
    lambda _dialect: select(func.max(_transfers.timestamp_us)), ()
)


async def select_last_timestamp(connection: AsyncConnection, /) -> int:
    [(last,)] = await _select_last_timestamp.rows(connection)
    return int(last) if last is not None else 0


async def select_account_transfers(
    connection: AsyncConnection,
    account_id: str,
    /,
    *,
    limit: int,
    before_timestamp_us: int | None,
) -> list[TransferRecord]:
    """Newest first. Two index range scans (debit side, credit side), merged."""
    records: list[TransferRecord] = []
    for side in (_transfers.debit_account_id, _transfers.credit_account_id):
        query = select(ledger_transfers).where(side == account_id)
        if before_timestamp_us is not None:
            query = query.where(_transfers.timestamp_us < before_timestamp_us)
        query = query.order_by(_transfers.timestamp_us.desc()).limit(limit)
        records.extend(_record_from_row(row) for row in await connection.execute(query))
    records.sort(key=lambda record: (record.timestamp_us, record.id), reverse=True)
    return records[:limit]


_TRANSFER_COLUMNS = (
    "id",
    "debit_account_id",
    "credit_account_id",
    "amount",
    "ledger",
    "code",
    "flags",
    "pending_id",
    "timeout_s",
    "user_data",
    "timestamp_us",
)
_insert_transfers = PreparedStatement(lambda _dialect: insert(ledger_transfers), _TRANSFER_COLUMNS)
_insert_holds = PreparedStatement(
    lambda _dialect: insert(ledger_pending_transfers), ("id", "status", "expires_at_us")
)
_resolve_holds = PreparedStatement(
    lambda _dialect: (
        update(ledger_pending_transfers)
        .where(_pending.id == bindparam("hold_id"))
        .values(status=bindparam("new_status"))
    ),
    ("new_status", "hold_id"),
)
_insert_failures = PreparedStatement(
    lambda _dialect: insert(ledger_failed_transfers),
    ("id", "fingerprint", "result", "timestamp_us"),
)
_TOTALS = ("debits_pending", "debits_posted", "credits_pending", "credits_posted")
# Increments rather than absolute values: even if a lock were missing, the
# CHECK constraints would see the true totals and refuse an overdraft.
_add_to_account_totals = PreparedStatement(
    lambda _dialect: (
        update(ledger_accounts)
        .where(_accounts.id == bindparam("account_id"))
        .values(
            {
                name: getattr(_accounts, name) + bindparam(f"{name}_delta", type_=BigInteger)
                for name in _TOTALS
            }
        )
    ),
    (*(f"{name}_delta" for name in _TOTALS), "account_id"),
)


async def write_plan(connection: AsyncConnection, plan: BatchPlan, /) -> None:
    """Write a plan: transfers (append-only), hold status, failures, then totals."""
    await _insert_transfers.run_many(connection, [_record_row(r) for r in plan.records])
    await _insert_holds.run_many(
        connection,
        [(hold.id, hold.status.value, hold.expires_at_us) for hold in plan.holds_created],
    )
    await _resolve_holds.run_many(
        connection,
        [(status.value, hold_id) for hold_id, status in plan.holds_resolved.items()],
    )
    await _insert_failures.run_many(
        connection,
        [(f.id, f.fingerprint, f.result.value, f.timestamp_us) for f in plan.failures],
    )
    # In id order, like every lock the ledger takes.
    await _add_to_account_totals.run_many(
        connection,
        [
            (
                delta.debits_pending,
                delta.debits_posted,
                delta.credits_pending,
                delta.credits_posted,
                account_id,
            )
            for account_id, delta in sorted(plan.account_deltas.items())
        ],
    )


def _record_row(record: TransferRecord) -> tuple[Any, ...]:
    """The values of ``_TRANSFER_COLUMNS``, in that order."""
    return (
        record.id,
        record.debit_account_id,
        record.credit_account_id,
        record.amount,
        int(record.ledger),
        int(record.code),
        int(record.flags),
        record.pending_id,
        record.timeout_s,
        record.user_data,
        record.timestamp_us,
    )
