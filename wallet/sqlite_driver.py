"""aiosqlite, minus the thread hops while a write transaction holds the lock.

SQLAlchemy's aiosqlite adapter sends every statement to aiosqlite's thread
and back four times (open a cursor, execute, fetch, close). On these machines
that costs about 0.27 ms per statement, while the statement itself takes a
few microseconds in SQLite; a contract step of 20 statements spent almost all
of its time hopping between threads, and the exchange's event loop paid for
every hop.

The hops exist so that the event loop never blocks on a lock. Inside a
``BEGIN IMMEDIATE`` transaction there is no lock left to wait for: the
connection already holds SQLite's only write lock, and in WAL mode readers in
other connections never block it. So while a write transaction is open this
adapter runs each statement directly on the event loop's thread, on the same
``sqlite3`` connection aiosqlite owns. Everything that can wait still goes
through aiosqlite's thread:

* connecting;
* ``BEGIN IMMEDIATE`` itself, which may wait up to the busy timeout for
  another connection's write lock;
* ``COMMIT`` and ``ROLLBACK`` (a commit may run a WAL checkpoint and fsync);
* every statement outside a write transaction, including read-only
  transactions, whose deferred ``BEGIN`` takes no lock until the first read.

The connection is never used by two threads at once: SQLAlchemy awaits each
operation of a connection before it starts the next, so aiosqlite's thread is
idle whenever a statement runs inline. ``check_same_thread=False`` only lifts
the ``sqlite3`` module's guard against a second thread, which this needs.

Durability, isolation and error types are SQLite's own and unchanged; the
ledger's concurrency tests run on this adapter.
"""

from __future__ import annotations

import collections
import sqlite3
from collections.abc import Iterator, Sequence
from typing import Any

import aiosqlite
from sqlalchemy.dialects.sqlite.aiosqlite import (
    AsyncAdapt_aiosqlite_connection,
    AsyncAdapt_aiosqlite_cursor,
    AsyncAdapt_aiosqlite_dbapi,
)
from sqlalchemy.util import await_only

__all__ = ["inline_write_dbapi"]

# The statement ``wallet.database`` issues to start a write transaction.
_BEGIN_WRITE = "BEGIN IMMEDIATE"


class _InlineCursor:
    """A DB-API cursor that runs its statements on the calling thread.

    Rows are fetched eagerly, as SQLAlchemy's own async cursors do, so no
    statement stays open past the call that ran it.
    """

    __slots__ = ("_cursor", "_rows", "description", "lastrowid", "rowcount")

    server_side = False
    arraysize = 1

    def __init__(self, connection: sqlite3.Connection, /) -> None:
        self._cursor = connection.cursor()
        self._rows: collections.deque[Any] = collections.deque()
        self.description: Any = None
        self.rowcount = -1
        self.lastrowid: int | None = None

    def execute(self, operation: str, parameters: Any = None, /) -> None:
        # SQLAlchemy's async engine insists that every statement awaits once;
        # the coroutine finishes without ever suspending the event loop.
        await_only(self._execute(operation, () if parameters is None else parameters))

    def executemany(self, operation: str, parameter_sets: Sequence[Any], /) -> None:
        await_only(self._executemany(operation, parameter_sets))

    async def _execute(self, operation: str, parameters: Any) -> None:
        self._cursor.execute(operation, parameters)
        self._take_results()

    async def _executemany(self, operation: str, parameter_sets: Sequence[Any]) -> None:
        self._cursor.executemany(operation, parameter_sets)
        self._take_results()

    def _take_results(self) -> None:
        cursor = self._cursor
        self.description = cursor.description
        self.rowcount = cursor.rowcount
        self.lastrowid = cursor.lastrowid
        self._rows = collections.deque(cursor.fetchall() if cursor.description else ())

    def fetchone(self) -> Any:
        return self._rows.popleft() if self._rows else None

    def fetchmany(self, size: int | None = None) -> list[Any]:
        count = min(size or self.arraysize, len(self._rows))
        return [self._rows.popleft() for _ in range(count)]

    def fetchall(self) -> list[Any]:
        rows = list(self._rows)
        self._rows.clear()
        return rows

    def __iter__(self) -> Iterator[Any]:
        while self._rows:
            yield self._rows.popleft()

    def close(self) -> None:
        self._rows.clear()
        self._cursor.close()

    async def _async_soft_close(self) -> None:
        """Called by SQLAlchemy's async results; the rows are already buffered."""


class _ThreadCursor(AsyncAdapt_aiosqlite_cursor):
    """aiosqlite's cursor, which notes when its connection took the write lock."""

    __slots__ = ()

    def execute(self, operation: Any, parameters: Any = None) -> Any:
        result = super().execute(operation, parameters)
        if operation == _BEGIN_WRITE:
            connection = self._adapt_connection
            assert isinstance(connection, _InlineWriteConnection)
            connection.holds_write_lock = True
        return result


class _InlineWriteConnection(AsyncAdapt_aiosqlite_connection):
    __slots__ = ("holds_write_lock",)

    _cursor_cls = _ThreadCursor

    def __init__(self, dbapi: Any, connection: Any) -> None:
        super().__init__(dbapi, connection)
        self.holds_write_lock = False

    def cursor(self, server_side: bool = False) -> Any:
        if self.holds_write_lock and not server_side:
            return _InlineCursor(self._connection._conn)
        return super().cursor(server_side)

    def commit(self) -> None:
        try:
            super().commit()
        finally:
            self.holds_write_lock = False

    def rollback(self) -> None:
        try:
            super().rollback()
        finally:
            self.holds_write_lock = False


class _InlineWriteDBAPI(AsyncAdapt_aiosqlite_dbapi):
    def connect(self, *args: Any, **kwargs: Any) -> _InlineWriteConnection:
        # The statements of a write transaction run on the event loop's
        # thread, on the connection aiosqlite opened in its own thread.
        kwargs["check_same_thread"] = False
        connection = self.aiosqlite.connect(*args, **kwargs)
        connection._thread.daemon = True
        return _InlineWriteConnection(self, await_only(connection))


def inline_write_dbapi() -> AsyncAdapt_aiosqlite_dbapi:
    """The DB-API module to pass as ``module=`` to an aiosqlite engine."""
    return _InlineWriteDBAPI(aiosqlite, sqlite3)
