"""Opening the ledger database and running transactions on it.

Two databases are supported, each with its own way of never losing a race:

* **SQLite** (aiosqlite), in WAL mode. Every write transaction starts with
  ``BEGIN IMMEDIATE``, which takes the database's single write lock before
  the first read. The driver's default (a deferred ``BEGIN`` issued at the
  first write) lets two concurrent spends both read the old balance and both
  pass; that was measured. Read-only work uses a deferred ``BEGIN`` and sees
  one WAL snapshot without blocking writers. Once a write transaction holds
  the lock its statements skip aiosqlite's thread (``wallet.sqlite_driver``
  says why that is safe and four times cheaper).
* **PostgreSQL** (asyncpg), at READ COMMITTED. The ledger locks the accounts
  it touches with ``SELECT ... FOR UPDATE`` in id order, so concurrent batches
  queue on shared accounts instead of deadlocking (a deadlock that still
  happens, say against a caller's own locks, is retried). Read-only work runs
  at REPEATABLE READ, so several queries see one snapshot.

``run_transaction`` retries a unit of work that lost a race (a deadlock, a
serialization failure, a busy SQLite database, a duplicate-insert race) a
bounded number of times. A writer that runs one transaction at a time may
keep its connection between them (``HeldConnection``) instead of taking it
from the pool and handing it back each time.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AbstractAsyncContextManager
from typing import Any, TypeVar

from sqlalchemy import event
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, IntegrityError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from wallet.errors import (
    LedgerConflict,
    LedgerRejected,
    LedgerUnavailable,
    UnsupportedDatabase,
    ValueOutOfRange,
    WalletError,
)
from wallet.limits import (
    DATABASE_CONNECT_TIMEOUT_S,
    DATABASE_POOL_OVERFLOW_MAX,
    DATABASE_POOL_SIZE,
    DATABASE_POOL_TIMEOUT_S,
    DATABASE_STATEMENT_TIMEOUT_S,
    SQLITE_BUSY_TIMEOUT_MS,
    TRANSACTION_ATTEMPTS_MAX,
    TRANSACTION_RETRY_DELAY_BASE_MS,
    TRANSACTION_RETRY_DELAY_MAX_MS,
)
from wallet.sqlite_driver import inline_write_dbapi

__all__ = [
    "HeldConnection",
    "async_database_url",
    "open_database",
    "read_transaction",
    "run_transaction",
    "translate_error",
    "translated_errors",
]

T = TypeVar("T")

_SQLITE_DRIVER = "sqlite+aiosqlite"
_POSTGRESQL_DRIVER = "postgresql+asyncpg"
_DRIVERS = {
    "sqlite": _SQLITE_DRIVER,
    "sqlite+pysqlite": _SQLITE_DRIVER,
    "sqlite+aiosqlite": _SQLITE_DRIVER,
    "postgres": _POSTGRESQL_DRIVER,
    "postgresql": _POSTGRESQL_DRIVER,
    "postgresql+psycopg": _POSTGRESQL_DRIVER,
    "postgresql+psycopg2": _POSTGRESQL_DRIVER,
    "postgresql+asyncpg": _POSTGRESQL_DRIVER,
}

# The execution option that marks a read-only SQLite transaction, which may
# begin deferred instead of taking the write lock.
_READ_ONLY_OPTION = "wallet_read_only"

# PostgreSQL SQLSTATEs of a lost race: serialization_failure, deadlock_detected,
# lock_not_available, unique_violation (two inserts of one new id).
_RETRYABLE_SQLSTATES = frozenset({"40001", "40P01", "55P03", "23505"})
_SQLITE_RETRYABLE_ERRORS = ("SQLITE_BUSY", "SQLITE_LOCKED")
_SQLITE_RETRYABLE_MESSAGES = ("database is locked", "database table is locked")


def async_database_url(url: str, /) -> str:
    """``url`` with the async driver the wallet uses (aiosqlite or asyncpg)."""
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise UnsupportedDatabase("?", reason="not a database URL") from exc
    driver = _DRIVERS.get(parsed.drivername)
    if driver is None:
        raise UnsupportedDatabase(parsed.drivername, reason="use sqlite:// or postgresql://")
    if driver == _SQLITE_DRIVER and parsed.database in (None, "", ":memory:"):
        # Each pooled connection would get its own empty database, and a
        # single shared connection cannot hold concurrent transactions.
        raise UnsupportedDatabase(parsed.drivername, reason="in-memory SQLite; use a file")
    return parsed.set(drivername=driver).render_as_string(hide_password=False)


def open_database(url: str, /) -> AsyncEngine:
    """An engine for ``url``, configured for the ledger's concurrency rules.

    The caller owns the engine and must ``await engine.dispose()``.
    """
    driver_url = async_database_url(url)
    pool_options: dict[str, Any] = {
        "pool_size": DATABASE_POOL_SIZE,
        "max_overflow": DATABASE_POOL_OVERFLOW_MAX,
        "pool_timeout": DATABASE_POOL_TIMEOUT_S,
    }
    if driver_url.startswith(_SQLITE_DRIVER):
        # LIFO hands the writer back the connection whose page cache is warm;
        # the exchange runs about 170 distinct statements, more than the
        # sqlite3 module's default cache of 128 prepared statements.
        engine = create_async_engine(
            driver_url,
            module=inline_write_dbapi(),
            connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000, "cached_statements": 1024},
            pool_use_lifo=True,
            **pool_options,
        )
        _configure_sqlite(engine)
        return engine
    return create_async_engine(
        driver_url,
        isolation_level="READ COMMITTED",
        pool_pre_ping=True,
        connect_args={
            "timeout": DATABASE_CONNECT_TIMEOUT_S,
            "command_timeout": DATABASE_STATEMENT_TIMEOUT_S,
        },
        **pool_options,
    )


def _configure_sqlite(engine: AsyncEngine) -> None:
    """SQLAlchemy's documented recipe: the driver stops issuing BEGIN, we issue it."""

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _connection_record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            # NORMAL is durable in WAL mode except for the last transactions
            # before a power loss; the database never corrupts.
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
            # Checkpoints run in a thread of their own (wallet.sqlite_driver),
            # not inside a COMMIT on the event loop's thread.
            cursor.execute("PRAGMA wal_autocheckpoint=0")
        finally:
            cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(connection: Connection) -> None:
        # Straight on the driver's cursor: every write transaction starts here,
        # and SQLAlchemy's statement layer would cost more than the BEGIN.
        # Errors are raised as SQLAlchemy's, as through the engine.
        read_only = connection.get_execution_options().get(_READ_ONLY_OPTION)
        begin = "BEGIN" if read_only else "BEGIN IMMEDIATE"
        dbapi_connection = connection.connection.dbapi_connection
        assert dbapi_connection is not None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(begin)
        except sqlite3.Error as error:
            raise DBAPIError.instance(begin, (), error, sqlite3.Error) from error
        finally:
            cursor.close()


@contextlib.asynccontextmanager
async def read_transaction(engine: AsyncEngine, /) -> AsyncIterator[AsyncConnection]:
    """A transaction that only reads and sees one consistent snapshot."""
    with translated_errors():
        async with engine.connect() as connection:
            if connection.dialect.name == "postgresql":
                await connection.execution_options(
                    isolation_level="REPEATABLE READ", postgresql_readonly=True
                )
            else:
                await connection.execution_options(**{_READ_ONLY_OPTION: True})
            async with connection.begin():
                yield connection


async def run_transaction(
    engine: AsyncEngine,
    work: Callable[[AsyncConnection], Awaitable[T]],
    /,
    *,
    attempts_max: int = TRANSACTION_ATTEMPTS_MAX,
) -> T:
    """Run ``work(connection)`` in one transaction; commit, or retry on a lost race.

    ``work`` may run more than once, so it must not have side effects outside
    the transaction (publish messages after this returns). A race still lost
    after ``attempts_max`` attempts raises ``LedgerUnavailable``; other
    database errors are translated into the wallet's errors; the caller's own
    exceptions pass through untouched (and roll the transaction back).
    """
    return await _retried(engine.begin, work, attempts_max=attempts_max)


class HeldConnection:
    """One writer's transactions, one at a time in arrival order, on a connection it keeps.

    For SQLite, which takes one writer at a time: queueing the transactions
    here, in order, beats letting the driver's busy handler sleep and retry,
    which starves unlucky transactions for seconds under load (measured).
    And taking a connection from the pool and handing it back costs as much
    CPU as a short transaction itself (a one-row insert: 186 µs through
    ``engine.begin()``, 93 µs on a kept connection, measured).

    Transactions run and retry as ``run_transaction``'s do. After any
    failure, the caller's own included, the connection goes back to the
    pool and the next transaction takes one afresh: failing work then costs
    what it costs through ``run_transaction``, and no connection a failed or
    cancelled rollback left inside a transaction is used again. After
    ``close`` each transaction takes its own connection (still one at a
    time).
    """

    def __init__(self, engine: AsyncEngine, /) -> None:
        self._engine = engine
        self._connection: AsyncConnection | None = None
        self._closed = False
        # Held while a transaction runs (with its retries): the writer's turn.
        self.turn = asyncio.Lock()

    async def run(
        self,
        work: Callable[[AsyncConnection], Awaitable[T]],
        /,
        *,
        attempts_max: int = TRANSACTION_ATTEMPTS_MAX,
    ) -> T:
        async with self.turn:
            return await _retried(self._transaction, work, attempts_max=attempts_max)

    async def close(self) -> None:
        """Hand the connection back once the running transaction has ended."""
        async with self.turn:
            self._closed = True
            connection, self._connection = self._connection, None
            if connection is not None:
                await _close_quietly(connection)

    @contextlib.asynccontextmanager
    async def _transaction(self) -> AsyncIterator[AsyncConnection]:
        if self._closed:
            async with self._engine.begin() as fresh:
                yield fresh
            return
        held = self._connection
        if held is None:
            held = self._connection = await self._engine.connect()
        try:
            async with held.begin():
                yield held
        except BaseException:
            # The rollback may have failed or been cancelled, leaving the driver
            # inside a transaction SQLAlchemy no longer tracks: hand it back for
            # the pool's own rollback and start afresh (as run_transaction would).
            self._connection = None
            await _close_quietly(held)
            raise


async def _close_quietly(connection: AsyncConnection) -> None:
    """Hand a connection back; one that cannot roll back cleanly is dropped by the pool."""
    with contextlib.suppress(SQLAlchemyError, OSError):
        await connection.close()


async def _retried(
    begin: Callable[[], AbstractAsyncContextManager[AsyncConnection]],
    work: Callable[[AsyncConnection], Awaitable[T]],
    /,
    *,
    attempts_max: int,
) -> T:
    """``work`` in a transaction ``begin`` starts; again, up to ``attempts_max``, on a lost race."""
    if not 1 <= attempts_max <= TRANSACTION_ATTEMPTS_MAX:
        raise ValueOutOfRange(
            "attempts_max", attempts_max, minimum=1, maximum=TRANSACTION_ATTEMPTS_MAX
        )
    for attempt in range(1, attempts_max + 1):
        try:
            with translated_errors():
                async with begin() as connection:
                    return await work(connection)
        except LedgerConflict as exc:
            if attempt == attempts_max:
                raise LedgerUnavailable(exc.reason, attempts=attempt) from exc
            await asyncio.sleep(_retry_delay_s(attempt))
    raise AssertionError("unreachable: the last attempt returns or raises")


def _retry_delay_s(attempt: int) -> float:
    # Exponential backoff with full jitter, so that the racers spread out.
    ceiling_ms = min(TRANSACTION_RETRY_DELAY_MAX_MS, TRANSACTION_RETRY_DELAY_BASE_MS * 2**attempt)
    return random.uniform(0, ceiling_ms) / 1000


@contextlib.contextmanager
def translated_errors() -> Iterator[None]:
    """Translate database exceptions raised inside the block into the wallet's."""
    try:
        yield
    except WalletError:
        raise
    except (SQLAlchemyError, OSError, TimeoutError) as exc:
        raise translate_error(exc) from exc


def translate_error(exc: BaseException, /) -> WalletError:
    reason = f"{type(exc).__name__}: {_first_line(exc)}"
    if _is_lost_race(exc):
        return LedgerConflict(reason)
    if isinstance(exc, IntegrityError):
        return LedgerRejected(reason)
    if isinstance(exc, DBAPIError) and _sqlstate(exc).startswith("P0"):
        # A trigger raised: the append-only guard on ledger_transfers.
        return LedgerRejected(reason)
    return LedgerUnavailable(reason)


def _is_lost_race(exc: BaseException) -> bool:
    if not isinstance(exc, DBAPIError):
        return False
    if _sqlstate(exc) in _RETRYABLE_SQLSTATES:
        return True
    error_name = str(getattr(exc.orig, "sqlite_errorname", ""))
    if error_name.startswith(_SQLITE_RETRYABLE_ERRORS):
        return True
    message = str(exc.orig).lower()
    return any(text in message for text in _SQLITE_RETRYABLE_MESSAGES)


def _sqlstate(exc: DBAPIError) -> str:
    return str(getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None) or "")


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else ""
