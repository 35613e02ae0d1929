"""aiosqlite, with one thread hop per statement, or none while nothing can wait.

SQLAlchemy's aiosqlite adapter sends every statement to aiosqlite's thread
and back four times (open a cursor, execute, fetch, close). On these machines
that costs about 0.27 ms per statement, while the statement itself takes a
few microseconds in SQLite; a contract step of 20 statements spent almost all
of its time hopping between threads, and the exchange's event loop paid for
every hop.

The hops exist so that the event loop never blocks on a lock. This adapter
keeps that promise with fewer of them:

* Inside a ``BEGIN IMMEDIATE`` transaction there is no lock left to wait
  for: the connection holds SQLite's only write lock, and in WAL mode readers
  in other connections never block it. Its statements run directly on the
  event loop's thread, on the ``sqlite3`` connection aiosqlite owns. So does
  ``ROLLBACK``, which only releases locks.
* So does ``COMMIT``: in WAL mode with ``synchronous=NORMAL`` it appends
  the transaction's pages to the WAL and syncs nothing (measured: 85 µs
  less CPU per transaction than a hop). The step that may fsync, the
  checkpoint copying the WAL back into the database, is not left to SQLite
  (which would run it inside a COMMIT after 1,000 pages): it is turned off
  (``wal_autocheckpoint=0``). After ``SQLITE_CHECKPOINT_COMMITS`` commits
  or ``SQLITE_CHECKPOINT_ROWS`` changed rows a connection asks for a
  ``PASSIVE`` checkpoint, which bounds the WAL, and does not wait for it: it
  runs in a thread of its own, on a connection of its own, while the writer
  goes on (WAL mode lets both work at once). Run on the writer's own
  connection, every statement of the next transactions queued behind the
  whole copy and its fsyncs: measured at 50 deals/s, each contract step's
  p99 was 10 ms instead of 4. The writer's next commit then copies only
  what was appended during the background copy, so that the WAL can start
  over (``BackgroundCheckpoints`` says why).
* ``BEGIN IMMEDIATE`` is first tried on the event loop's thread with a busy
  timeout of zero. Only when another connection holds the write lock does it
  go to aiosqlite's thread, to wait there up to the normal busy timeout.
* Every other statement (reads outside a write transaction, including a
  read-only transaction's deferred ``BEGIN``, which takes its snapshot at the
  first read) goes to aiosqlite's thread, executed and fetched in one hop.

The connection is never used by two threads at once. SQLAlchemy awaits each
operation on a connection before starting the next; an operation whose
caller was cancelled may still be running in aiosqlite's thread, so the
adapter keeps count of those, and while one is unfinished everything
(``ROLLBACK`` included) queues behind it in that thread.
``check_same_thread=False`` only lifts the ``sqlite3`` module's guard against
a second thread, which this needs.

Durability, isolation and error types are SQLite's own and unchanged; the
ledger's concurrency tests run on this adapter.
"""

from __future__ import annotations

import collections
import logging
import os
import queue
import sqlite3
import threading
import urllib.parse
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

import aiosqlite
from sqlalchemy.dialects.sqlite.aiosqlite import (
    AsyncAdapt_aiosqlite_connection,
    AsyncAdapt_aiosqlite_dbapi,
)
from sqlalchemy.engine import Connection
from sqlalchemy.util import await_only

from wallet.limits import SQLITE_CHECKPOINT_COMMITS, SQLITE_CHECKPOINT_ROWS

__all__ = ["inline_sqlite_connection", "inline_write_dbapi"]

log = logging.getLogger(__name__)

T = TypeVar("T")

# The statement ``wallet.database`` issues to start a write transaction.
_BEGIN_WRITE = "BEGIN IMMEDIATE"


class _Cursor:
    """A DB-API cursor that runs a statement inline when it cannot wait.

    Rows are fetched eagerly, as SQLAlchemy's own async cursors do, so no
    statement stays open past the call that ran it.
    """

    __slots__ = ("_connection", "_cursor", "_rows", "description", "lastrowid", "rowcount")

    server_side = False
    arraysize = 1

    def __init__(self, connection: _Connection, /) -> None:
        self._connection = connection
        self._cursor: sqlite3.Cursor | None = None
        self._rows: collections.deque[Any] = collections.deque()
        self.description: Any = None
        self.rowcount = -1
        self.lastrowid: int | None = None

    def execute(self, operation: str, parameters: Any = None, /) -> None:
        if operation == _BEGIN_WRITE:
            self._connection.begin_write()
            return
        parameters = () if parameters is None else parameters
        self._connection.run(self._execute, operation, parameters)

    def executemany(self, operation: str, parameter_sets: Sequence[Any], /) -> None:
        self._connection.run(self._executemany, operation, parameter_sets)

    def _execute(self, operation: str, parameters: Any) -> None:
        self._take_results(self._raw_cursor().execute(operation, parameters))

    def _executemany(self, operation: str, parameter_sets: Sequence[Any]) -> None:
        self._take_results(self._raw_cursor().executemany(operation, parameter_sets))

    def _raw_cursor(self) -> sqlite3.Cursor:
        if self._cursor is None:
            self._cursor = self._connection.raw.cursor()
        return self._cursor

    def _take_results(self, cursor: sqlite3.Cursor) -> None:
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
        # The sqlite3 cursor holds no open statement (rows are fetched
        # eagerly); it is freed with this object, on whichever thread.
        self._rows.clear()

    async def _async_soft_close(self) -> None:
        """Called by SQLAlchemy's async results; the rows are already buffered."""


class _Connection(AsyncAdapt_aiosqlite_connection):
    __slots__ = (
        "_aiosqlite",
        "_busy_timeout_ms",
        "_changes_at_checkpoint",
        "_changes_at_commit",
        "_commits_since_checkpoint",
        "_database_file",
        "_hops_lock",
        "_hops_unfinished",
        "holds_write_lock",
    )

    def __init__(self, dbapi: Any, connection: aiosqlite.Connection) -> None:
        super().__init__(dbapi, connection)  # type: ignore[arg-type]
        self._aiosqlite = connection
        self.holds_write_lock = False
        # Operations sent to aiosqlite's thread and not yet finished there,
        # even if their caller stopped waiting (cancelled).
        self._hops_unfinished = 0
        self._hops_lock = threading.Lock()
        # Since this connection's last checkpoint (see commit).
        self._commits_since_checkpoint = 0
        self._changes_at_checkpoint = 0
        self._changes_at_commit = 0
        self._busy_timeout_ms: int | None = None
        # The file checkpoints are asked for; "" for a database in memory.
        self._database_file: str | None = None

    @property
    def raw(self) -> sqlite3.Connection:
        return self._aiosqlite._conn

    def cursor(self, server_side: bool = False) -> Any:
        if server_side:
            return super().cursor(server_side)
        return _Cursor(self)

    def run(self, function: Callable[..., T], /, *args: Any) -> T:
        """A statement: on the event loop's thread while the write lock is held."""
        return self._call(function, *args, inline=self.holds_write_lock)

    def inline_connection(self) -> sqlite3.Connection | None:
        """The ``sqlite3`` connection, if a statement may run on it now on this thread."""
        if self.holds_write_lock and not self._hops_unfinished:
            return self.raw
        return None

    def begin_write(self) -> None:
        """BEGIN IMMEDIATE: inline if the lock is free, else wait for it in aiosqlite's thread."""
        if not self._call(self._try_begin_write, inline=True):
            self._call(self.raw.execute, _BEGIN_WRITE, inline=False)
        self.holds_write_lock = True

    def _try_begin_write(self) -> bool:
        if self._busy_timeout_ms is None:
            # Set once when the connection opens (wallet.database); read once.
            self._busy_timeout_ms = int(self.raw.execute("PRAGMA busy_timeout").fetchone()[0])
        busy_timeout_ms = self._busy_timeout_ms
        self.raw.execute("PRAGMA busy_timeout=0")
        try:
            self.raw.execute(_BEGIN_WRITE)
        except sqlite3.OperationalError as error:
            if error.sqlite_errorcode & 0xFF != sqlite3.SQLITE_BUSY:
                raise
            return False
        finally:
            self.raw.execute(f"PRAGMA busy_timeout={busy_timeout_ms}")
        return True

    def commit(self) -> None:
        # In WAL mode with synchronous=NORMAL a COMMIT appends the transaction's
        # pages to the WAL and syncs nothing, so it runs inline. What may sync
        # is a checkpoint: SQLite's automatic one is off on these connections
        # (wallet.database); ours runs in the background (below).
        try:
            if self._aiosqlite._connection is None:
                return
            self._call(self.raw.commit, inline=True)
        finally:
            self.holds_write_lock = False
        self._checkpoint_if_due()

    def _checkpoint_if_due(self) -> None:
        """Ask for the WAL to be copied back into the database after enough commits
        or changed rows, and finish what a background checkpoint could not."""
        if self._database_file is None:
            self._database_file = self._call(_main_database_file, self.raw, inline=True)
        if not self._database_file:
            return
        self._commits_since_checkpoint += 1
        changes = self.raw.total_changes
        wrote = changes != self._changes_at_commit
        self._changes_at_commit = changes
        if wrote and background_checkpoints.take_copied(self._database_file):
            # Only a writer between its transactions can copy the last frames
            # with nothing appended meanwhile; then its next transaction starts
            # the WAL over. A few frames and two fsyncs: the bulk was copied in
            # the background (BackgroundCheckpoints).
            self._call(_checkpoint_passive, self.raw, inline=False)
        if (
            self._commits_since_checkpoint < SQLITE_CHECKPOINT_COMMITS
            and changes - self._changes_at_checkpoint < SQLITE_CHECKPOINT_ROWS
        ):
            return
        self._commits_since_checkpoint = 0
        self._changes_at_checkpoint = changes
        background_checkpoints.request(self._database_file)

    def rollback(self) -> None:
        # ROLLBACK only releases locks, so it may run inline.
        try:
            if self._aiosqlite._connection is not None and (
                self._hops_unfinished or self.raw.in_transaction
            ):
                self._call(self.raw.rollback, inline=True)
        finally:
            self.holds_write_lock = False

    def _call(self, function: Callable[..., T], /, *args: Any, inline: bool) -> T:
        """``function(*args)`` on the event loop's thread if ``inline``, else in one hop.

        An operation still unfinished in aiosqlite's thread (its caller was
        cancelled) sends every later one there too, queued behind it.
        """
        try:
            if inline and not self._hops_unfinished:
                return await_only(_now(function, *args))
            return await_only(self._hop(function, *args))
        except Exception as error:
            self._handle_exception(error)

    async def _hop(self, function: Callable[..., T], /, *args: Any) -> T:
        with self._hops_lock:
            self._hops_unfinished += 1
        result: T = await self._aiosqlite._execute(self._finish_hop, function, args)  # type: ignore[no-untyped-call]
        return result

    def _finish_hop(self, function: Callable[..., T], args: tuple[Any, ...]) -> T:
        try:
            return function(*args)
        finally:
            with self._hops_lock:
                self._hops_unfinished -= 1


def _main_database_file(connection: sqlite3.Connection, /) -> str:
    """The path of the connection's main database; "" if it lives in memory."""
    for _seq, name, path in connection.execute("PRAGMA database_list").fetchall():
        if name == "main":
            return str(path)
    return ""


def _checkpoint_passive(connection: sqlite3.Connection, /) -> None:
    """A ``PASSIVE`` checkpoint: copies what it can without waiting for readers or
    writers. Its row is fetched, so that no statement stays open on the
    connection."""
    connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()


def checkpoint_file(path: str, /) -> None:
    """A background checkpoint of ``path``'s WAL, on a connection of its own.

    The file is opened read-write but never created: a database removed
    meanwhile is an error, not a new empty file.
    """
    uri = f"file:{urllib.parse.quote(path)}?mode=rw"
    connection = sqlite3.connect(uri, uri=True, timeout=0, check_same_thread=False)
    try:
        _checkpoint_passive(connection)
    finally:
        connection.close()


class BackgroundCheckpoints:
    """Checkpoints asked for by commits, run one at a time in a daemon thread.

    ``request`` never waits: a file whose checkpoint is already queued or
    running is not queued again (the one under way covers it).

    A checkpoint copies the frames that were in the WAL when it began, and
    the WAL only starts over when a write transaction begins with every
    frame copied. Under load the writer appends while the background copy
    runs, so that moment never comes: measured at 200 deals/s, the WAL grew
    to 816 MB in 15 s. So each file whose background checkpoint ended is
    handed to the next commit that wrote rows (``take_copied``): that
    writer, between its transactions, copies what was appended meanwhile (a
    few frames; the bulk is done), and its next transaction starts the WAL
    over.

    A failed checkpoint is logged and leaves the WAL to the next one;
    SQLite's WAL is safe to leave uncheckpointed, even if the process stops
    mid-way.
    """

    def __init__(self) -> None:
        self._start_over()
        # A forked child has none of the parent's threads: it starts its own.
        os.register_at_fork(after_in_child=self._start_over)

    def _start_over(self) -> None:
        self._lock = threading.Lock()
        self._files: queue.SimpleQueue[str] = queue.SimpleQueue()
        self._pending: set[str] = set()
        self._copied: set[str] = set()
        self._thread: threading.Thread | None = None

    @property
    def pending(self) -> int:
        """Files whose checkpoint is queued or running."""
        with self._lock:
            return len(self._pending)

    def request(self, path: str, /) -> None:
        with self._lock:
            if path in self._pending:
                return
            self._pending.add(path)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="sqlite-checkpoints", daemon=True
                )
                self._thread.start()
        self._files.put(path)

    def take_copied(self, path: str, /) -> bool:
        """Whether a background checkpoint of ``path`` ended since the last call
        (the caller then finishes it)."""
        with self._lock:
            if path not in self._copied:
                return False
            self._copied.discard(path)
            return True

    def _run(self) -> None:
        while True:
            path = self._files.get()
            copied = False
            try:
                checkpoint_file(path)
                copied = True
            except Exception as error:
                # Any error is caught: a dead thread would leave every file
                # pending, and the WAL would grow without bound. Busy is no
                # fault: another connection is checkpointing the file or
                # closing it (the last one to close copies the WAL itself).
                if not _is_busy(error):
                    log.warning("SQLite checkpoint of %s failed: %r", path, error)
            finally:
                with self._lock:
                    self._pending.discard(path)
                    if copied:
                        self._copied.add(path)


def _is_busy(error: Exception, /) -> bool:
    return (
        isinstance(error, sqlite3.OperationalError)
        and error.sqlite_errorcode & 0xFF == sqlite3.SQLITE_BUSY
    )


# One per process: checkpoints are rare (one per SQLITE_CHECKPOINT_COMMITS
# commits) and short, so one thread serves every database file.
background_checkpoints = BackgroundCheckpoints()


async def _now(function: Callable[..., T], /, *args: Any) -> T:
    # SQLAlchemy's async engine insists that every statement awaits once;
    # this coroutine finishes without ever suspending the event loop.
    return function(*args)


class _DBAPI(AsyncAdapt_aiosqlite_dbapi):
    def connect(self, *args: Any, **kwargs: Any) -> _Connection:
        # Statements also run on the event loop's thread, on the connection
        # aiosqlite opens in its own thread.
        kwargs["check_same_thread"] = False
        connection = self.aiosqlite.connect(*args, **kwargs)
        connection._thread.daemon = True
        return _Connection(self, await_only(connection))


def inline_write_dbapi() -> AsyncAdapt_aiosqlite_dbapi:
    """The DB-API module to pass as ``module=`` to an aiosqlite engine."""
    return _DBAPI(aiosqlite, sqlite3)


def inline_sqlite_connection(connection: Connection | None, /) -> sqlite3.Connection | None:
    """The ``sqlite3`` connection under ``connection`` when a statement may run on it
    directly (its write transaction is held and nothing is left in aiosqlite's
    thread); None otherwise, or when ``connection`` is not this adapter's."""
    if connection is None or connection.closed or connection.invalidated:
        return None
    adapted = connection.connection.dbapi_connection
    if not isinstance(adapted, _Connection):
        return None
    return adapted.inline_connection()
