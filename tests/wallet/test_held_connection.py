"""A writer's kept connection: one connection for every transaction, a fresh one after a fault.

``HeldConnection`` runs a single writer's transactions one after another on
the connection it keeps (the exchange's SQLite writer does this behind its
lock). These tests prove, on a real SQLite file, that consecutive
transactions share one driver connection and none goes back to the pool,
that after a failure the connection goes back and the next transaction
takes a fresh one (also when the rollback itself failed and left the
driver inside the transaction), that lost races are retried as
``run_transaction`` retries them, that concurrent callers take turns in
the order they came, and that after ``close`` nothing stays checked out.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from wallet import HeldConnection, LedgerUnavailable, sqlite_driver
from wallet.database import open_database


class _WorkFailed(Exception):
    pass


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    engine = open_database(f"sqlite:///{tmp_path / 'held.sqlite3'}")
    async with engine.begin() as connection:
        await connection.execute(text("CREATE TABLE notes (n INTEGER NOT NULL)"))
    try:
        yield engine
    finally:
        await engine.dispose()


async def driver_connection_of(connection: AsyncConnection) -> Any:
    return (await connection.get_raw_connection()).driver_connection


def insert(n: int) -> Any:
    async def work(connection: AsyncConnection) -> Any:
        await connection.execute(text("INSERT INTO notes (n) VALUES (:n)"), {"n": n})
        return await driver_connection_of(connection)

    return work


async def stored(engine: AsyncEngine) -> list[int]:
    async with engine.connect() as connection:
        return list((await connection.execute(text("SELECT n FROM notes ORDER BY n"))).scalars())


def checked_out(engine: AsyncEngine) -> int:
    return engine.sync_engine.pool.checkedout()  # type: ignore[attr-defined,no-any-return]


async def test_transactions_share_one_connection_until_one_fails(engine):
    held = HeldConnection(engine)
    first = await held.run(insert(1))
    second = await held.run(insert(2))
    assert first is second
    assert checked_out(engine) == 1  # kept between transactions, not handed back

    async def failing(connection: AsyncConnection) -> None:
        await connection.execute(text("INSERT INTO notes (n) VALUES (3)"))
        raise _WorkFailed

    with pytest.raises(_WorkFailed):
        await held.run(failing)
    assert checked_out(engine) == 0  # handed back after the failure
    await held.run(insert(4))
    assert checked_out(engine) == 1
    assert await stored(engine) == [1, 2, 4]
    await held.close()
    assert checked_out(engine) == 0


async def test_a_rollback_that_failed_leaves_no_transaction_behind(engine, monkeypatch):
    held = HeldConnection(engine)
    await held.run(insert(1))
    real_rollback = sqlite_driver._Connection.rollback
    refusals: list[int] = []

    def refused_once(self: Any) -> None:
        if not refusals:
            refusals.append(1)
            raise OSError("the rollback could not run (test)")
        real_rollback(self)

    monkeypatch.setattr(sqlite_driver._Connection, "rollback", refused_once)

    async def failing(connection: AsyncConnection) -> None:
        await connection.execute(text("INSERT INTO notes (n) VALUES (2)"))
        raise _WorkFailed

    with pytest.raises((_WorkFailed, LedgerUnavailable)):
        await held.run(failing)
    assert refusals == [1]
    # The driver was left inside the failed transaction; the next one must
    # neither fail on BEGIN nor commit the failed insert with its own.
    await held.run(insert(3))
    assert await stored(engine) == [1, 3]
    await held.close()
    assert checked_out(engine) == 0


async def test_a_lost_race_is_retried_on_the_kept_connection(engine):
    held = HeldConnection(engine)
    attempts: list[int] = []

    async def losing_once(connection: AsyncConnection) -> int:
        attempts.append(1)
        if len(attempts) == 1:
            raise OperationalError("INSERT", {}, Exception("database is locked"))
        await connection.execute(text("INSERT INTO notes (n) VALUES (7)"))
        return len(attempts)

    assert await held.run(losing_once) == 2
    assert await stored(engine) == [7]

    async def always_losing(connection: AsyncConnection) -> None:
        raise OperationalError("INSERT", {}, Exception("database is locked"))

    with pytest.raises(LedgerUnavailable):
        await held.run(always_losing, attempts_max=2)
    await held.close()


async def test_after_close_each_transaction_takes_its_own_connection(engine):
    held = HeldConnection(engine)
    await held.run(insert(1))
    await held.close()
    await held.run(insert(2))
    assert checked_out(engine) == 0
    assert await stored(engine) == [1, 2]


async def test_concurrent_transactions_take_turns_in_arrival_order(engine):
    held = HeldConnection(engine)
    running: list[int] = []
    overlaps: list[int] = []

    async def slow_insert(n: int) -> None:
        async def work(connection: AsyncConnection) -> None:
            running.append(n)
            overlaps.append(len(running))
            await asyncio.sleep(0.01)  # another caller would run now, without the turns
            await connection.execute(text("INSERT INTO notes (n) VALUES (:n)"), {"n": n})
            running.remove(n)

        await held.run(work)

    order = [5, 1, 4, 2, 3]
    await asyncio.gather(*(slow_insert(n) for n in order))
    assert overlaps == [1] * len(order)
    async with engine.connect() as connection:
        rows = await connection.execute(text("SELECT n FROM notes ORDER BY rowid"))
        assert list(rows.scalars()) == order
    await held.close()
