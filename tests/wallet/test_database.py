"""Opening databases and running units of work, on SQLite and PostgreSQL.

URLs are normalised to the async drivers and unusable ones refused; SQLite
connections run in WAL with foreign keys on, and a write transaction holds
the write lock from its first statement. ``run_transaction`` commits, rolls
back on the caller's exception, retries a lost race a bounded number of
times, and translates database failures. A unit of work that combines the
caller's own SQL with ``create_transfers(connection=...)`` commits or rolls
back as one.
"""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from tests.wallet.ledger_helpers import ALICE, BOB, balance_of, mint_into, open_accounts, payment
from wallet import (
    LedgerConflict,
    LedgerUnavailable,
    SqlLedger,
    TransferResult,
    UnsupportedDatabase,
    ValueOutOfRange,
    check_invariants,
    open_database,
    run_transaction,
)
from wallet.database import async_database_url


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("sqlite:///var/ledger.db", "sqlite+aiosqlite:///var/ledger.db"),
        ("sqlite+aiosqlite:////tmp/ledger.db", "sqlite+aiosqlite:////tmp/ledger.db"),
        ("postgresql://user:secret@db:5432/agentx", "postgresql+asyncpg://user:secret@db:5432/agentx"),
        ("postgres://db/agentx", "postgresql+asyncpg://db/agentx"),
        ("postgresql+asyncpg://db/agentx", "postgresql+asyncpg://db/agentx"),
    ],
)  # fmt: skip
def test_urls_are_normalised_to_the_async_drivers(url: str, expected: str) -> None:
    assert async_database_url(url) == expected


@pytest.mark.parametrize(
    "url", ["mysql://db/agentx", "sqlite://", "sqlite:///:memory:", "not a url"]
)
def test_unusable_urls_are_refused(url: str) -> None:
    with pytest.raises(UnsupportedDatabase):
        open_database(url)


def test_a_refused_url_never_reveals_its_password() -> None:
    with pytest.raises(UnsupportedDatabase) as raised:
        open_database("mysql://user:secret@db/agentx")
    assert "secret" not in str(raised.value)
    assert raised.value.scheme == "mysql"


async def test_sqlite_connections_use_wal_and_enforce_foreign_keys(tmp_path: Path) -> None:
    engine = open_database(f"sqlite:///{tmp_path / 'pragmas.db'}")
    try:
        async with engine.connect() as connection:
            journal_mode = await connection.scalar(text("PRAGMA journal_mode"))
            foreign_keys = await connection.scalar(text("PRAGMA foreign_keys"))
            synchronous = await connection.scalar(text("PRAGMA synchronous"))
        assert (journal_mode, foreign_keys, synchronous) == ("wal", 1, 1)
    finally:
        await engine.dispose()


async def test_a_sqlite_write_transaction_takes_the_write_lock_at_begin(tmp_path: Path) -> None:
    """Two deferred transactions could both read a balance before either wrote it."""
    path = tmp_path / "lock.db"
    engine = open_database(f"sqlite:///{path}")
    try:
        async with engine.begin() as connection:
            await connection.execute(text("SELECT 1"))
            # Another writer, not waiting at all, must find the database locked.
            other = sqlite3.connect(path, timeout=0, isolation_level=None)
            try:
                with pytest.raises(sqlite3.OperationalError, match="locked"):
                    other.execute("BEGIN IMMEDIATE")
            finally:
                other.close()
    finally:
        await engine.dispose()


async def test_run_transaction_commits_the_work_and_returns_its_value(
    database_engine: AsyncEngine,
) -> None:
    async def work(connection: AsyncConnection) -> int:
        await connection.execute(text("CREATE TABLE scratch (value INTEGER)"))
        await connection.execute(text("INSERT INTO scratch VALUES (42)"))
        return 7

    assert await run_transaction(database_engine, work) == 7
    async with database_engine.connect() as connection:
        assert await connection.scalar(text("SELECT value FROM scratch")) == 42


async def test_run_transaction_rolls_back_and_passes_on_the_callers_exception(
    ledger: SqlLedger,
) -> None:
    await open_accounts(ledger, ALICE, BOB)
    await mint_into(ledger, ALICE, 1000, key="alice")

    class ContractRefused(Exception):
        pass

    async def work(connection: AsyncConnection) -> None:
        [outcome] = await ledger.create_transfers(
            [payment("pay", ALICE, BOB, 300)], connection=connection
        )
        assert outcome.result is TransferResult.OK
        raise ContractRefused

    with pytest.raises(ContractRefused):
        await run_transaction(ledger.engine, work)
    assert (await balance_of(ledger, ALICE)).available == 1000
    assert await ledger.account_transfers(BOB) == []
    await check_invariants(ledger.engine)


async def test_a_unit_of_work_commits_its_own_rows_and_the_transfers_together(
    ledger: SqlLedger,
) -> None:
    await open_accounts(ledger, ALICE, BOB)
    await mint_into(ledger, ALICE, 1000, key="alice")
    async with ledger.engine.begin() as connection:
        await connection.execute(text("CREATE TABLE contracts (id TEXT PRIMARY KEY)"))

    async def open_contract(connection: AsyncConnection) -> TransferResult:
        await connection.execute(text("INSERT INTO contracts VALUES ('c-1')"))
        [outcome] = await ledger.create_transfers(
            [payment("c-1:pay", ALICE, BOB, 300)], connection=connection
        )
        # The unit of work sees its own uncommitted transfer.
        balances = await ledger.lookup_accounts([ALICE], connection=connection)
        assert balances[ALICE].available == 700
        return outcome.result

    assert await run_transaction(ledger.engine, open_contract) is TransferResult.OK
    async with ledger.engine.connect() as connection:
        assert await connection.scalar(text("SELECT count(*) FROM contracts")) == 1
    assert (await balance_of(ledger, BOB)).available == 300
    await check_invariants(ledger.engine)


async def test_run_transaction_retries_a_lost_race_and_then_succeeds(
    database_engine: AsyncEngine,
) -> None:
    attempts = 0

    async def work(connection: AsyncConnection) -> str:
        nonlocal attempts
        attempts += 1
        if attempts < 3:
            raise LedgerConflict("simulated deadlock")
        return "done"

    assert await run_transaction(database_engine, work) == "done"
    assert attempts == 3


async def test_run_transaction_retries_a_busy_database_error_from_the_driver(
    database_engine: AsyncEngine,
) -> None:
    attempts = 0

    async def work(connection: AsyncConnection) -> None:
        nonlocal attempts
        attempts += 1
        busy = sqlite3.OperationalError("database is locked")
        raise OperationalError("BEGIN IMMEDIATE", {}, busy)

    with pytest.raises(LedgerUnavailable) as raised:
        await run_transaction(database_engine, work, attempts_max=3)
    assert attempts == 3
    assert raised.value.attempts == 3
    assert not isinstance(raised.value, LedgerConflict)


async def test_run_transaction_bounds_its_attempts(database_engine: AsyncEngine) -> None:
    async def work(connection: AsyncConnection) -> None:
        return None

    with pytest.raises(ValueOutOfRange):
        await run_transaction(database_engine, work, attempts_max=0)


async def test_an_unreachable_database_raises_ledger_unavailable(tmp_path: Path) -> None:
    engine = open_database("postgresql://postgres@127.0.0.1:1/nothing")
    ledger = SqlLedger(engine)
    try:
        with pytest.raises(LedgerUnavailable):
            await asyncio.wait_for(ledger.lookup_accounts([ALICE]), timeout=30)
    finally:
        await engine.dispose()
