"""Prepared statements give the answers SQLAlchemy would, on both databases.

``wallet.prepared_statements`` runs the hot path's statements below
SQLAlchemy Core: on SQLite, inside the write transaction, straight on the
``sqlite3`` connection. These tests prove that the rows, the counts of
changed rows, the statement's own constants, the order of the parameters
and the errors are those of the same statement run through SQLAlchemy; and,
that the inline path is the one taken in SQLite's write transaction, and
not in a read or while something listens to the engine's statements.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from wallet.database import open_database, read_transaction, run_transaction
from wallet.prepared_statements import PreparedStatement, among, id_list
from wallet.sqlite_driver import inline_sqlite_connection

_metadata = sa.MetaData()
_items = sa.Table(
    "prepared_items",
    _metadata,
    sa.Column("item_id", sa.Text, primary_key=True),
    sa.Column("kind", sa.Text, nullable=False),
    sa.Column("count", sa.BigInteger, nullable=False),
)

_insert = PreparedStatement(lambda _dialect: _items.insert(), ("item_id", "kind", "count"))
# Parameters given in another order than the compiler puts them, and a
# constant of the statement's own (the LIMIT).
_by_ids = PreparedStatement(
    lambda dialect: (
        sa.select(_items.c.item_id, _items.c.count)
        .where(among(dialect, _items.c.item_id, "ids"), _items.c.kind == sa.bindparam("kind"))
        .order_by(_items.c.item_id)
        .limit(2)
    ),
    ("kind", "ids"),
)
_add = PreparedStatement(
    lambda _dialect: (
        _items.update()
        .where(_items.c.kind == sa.bindparam("wanted_kind"))
        .values(count=_items.c.count + sa.bindparam("delta", type_=sa.BigInteger))
    ),
    ("delta", "wanted_kind"),
)


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    async with _engine_with_items(database_url) as engine:
        yield engine


@pytest.fixture
async def sqlite_engine(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    async with _engine_with_items(f"sqlite:///{tmp_path / 'prepared.sqlite3'}") as engine:
        yield engine


@contextlib.asynccontextmanager
async def _engine_with_items(url: str) -> AsyncIterator[AsyncEngine]:
    engine = open_database(url)

    async with engine.begin() as connection:
        await connection.run_sync(_metadata.create_all)
    try:
        yield engine
    finally:
        async with engine.begin() as connection:
            await connection.run_sync(_metadata.drop_all)
        await engine.dispose()


async def _fill(engine: AsyncEngine) -> None:
    async def work(connection: AsyncConnection) -> int:
        return await _insert.run_many(
            connection, [("a", "fruit", 1), ("b", "fruit", 2), ("c", "fruit", 3), ("d", "nut", 4)]
        )

    assert await run_transaction(engine, work) in (4, -1)  # asyncpg does not count them


async def test_rows_counts_constants_and_parameter_order_match_sqlalchemy(
    engine: AsyncEngine,
) -> None:
    await _fill(engine)

    async def work(connection: AsyncConnection) -> tuple[Any, ...]:
        found = await _by_ids.rows(connection, ("fruit", id_list(connection, ["c", "a", "b", "d"])))
        changed = await _add.run(connection, (10, "fruit"))
        changed_many = await _add.run_many(connection, [(1, "nut"), (1, "nut")])
        reference = await connection.execute(
            sa.select(_items.c.item_id, _items.c.count).order_by(_items.c.item_id)
        )
        return found, changed, changed_many, [tuple(row) for row in reference]

    found, changed, changed_many, everything = await run_transaction(engine, work)
    # The LIMIT of 2 holds, "d" is another kind, ids are in the statement's order.
    assert found == [("a", 1), ("b", 2)]
    assert changed == 3
    assert changed_many in (2, -1)  # asyncpg does not count an executemany's rows
    assert everything == [("a", 11), ("b", 12), ("c", 13), ("d", 6)]


async def test_a_duplicate_key_raises_sqlalchemy_integrity_error_and_writes_nothing(
    engine: AsyncEngine,
) -> None:
    await _fill(engine)

    async def duplicate(connection: AsyncConnection) -> None:
        await _insert.run(connection, ("e", "nut", 5))
        await _insert.run(connection, ("a", "fruit", 9))

    with pytest.raises(IntegrityError):
        async with engine.begin() as connection:
            await duplicate(connection)

    async def kinds(connection: AsyncConnection) -> list[Any]:
        return await _by_ids.rows(connection, ("nut", id_list(connection, ["d", "e"])))

    assert await run_transaction(engine, kinds) == [("d", 4)]


async def test_on_sqlite_only_the_write_transaction_runs_them_on_sqlite3_directly(
    sqlite_engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = sqlite_engine
    await _fill(engine)
    direct: list[bool] = []

    def noting(connection: Any) -> Any:
        raw = inline_sqlite_connection(connection)
        direct.append(raw is not None)
        return raw

    monkeypatch.setattr("wallet.prepared_statements.inline_sqlite_connection", noting)

    async def work(connection: AsyncConnection) -> list[Any]:
        return await _by_ids.rows(connection, ("nut", id_list(connection, ["d"])))

    assert await run_transaction(engine, work) == [("d", 4)]
    async with read_transaction(engine) as connection:
        assert await work(connection) == [("d", 4)]
    assert direct == [True, False]

    # Someone listening to the engine's statements is told of this one:
    # it then goes through SQLAlchemy.
    seen: list[str] = []

    def listen(*arguments: Any) -> None:
        seen.append(arguments[2])

    event.listen(engine.sync_engine, "before_cursor_execute", listen)
    try:
        assert await run_transaction(engine, work) == [("d", 4)]
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", listen)
    assert any("prepared_items" in statement for statement in seen)
