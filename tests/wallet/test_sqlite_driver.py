"""SQLite's statements skip aiosqlite's thread only while they cannot wait.

``wallet.sqlite_driver`` runs a write transaction's statements on the event
loop's thread and everything else (connecting, ``BEGIN IMMEDIATE``, commits,
reads) on aiosqlite's. These tests ask SQLite itself which thread ran a
statement (through a SQL function that returns the calling thread's id), and
prove that a writer queued behind another one's lock leaves the event loop
free, that failures roll back and leave the connection usable, and that
``executemany`` reports rows as the stock driver does.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import sqlite3
import sys
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from wallet import LedgerRejected, sqlite_driver
from wallet.database import open_database, read_transaction, run_transaction
from wallet.limits import SQLITE_BUSY_TIMEOUT_MS, SQLITE_CHECKPOINT_COMMITS

# A lock holder waits for the loop this long; well under the busy timeout.
_LOOP_PROOF_TIMEOUT_S = 10


class _CallerFailed(Exception):
    pass


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    engine = open_database(f"sqlite:///{tmp_path / 'driver.sqlite3'}")

    @event.listens_for(engine.sync_engine, "connect")
    def _add_thread_function(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.create_function("thread_id", 0, threading.get_ident)

    async def create_table(connection: AsyncConnection) -> None:
        await connection.execute(text("CREATE TABLE item (id INTEGER PRIMARY KEY, label TEXT)"))

    await run_transaction(engine, create_table)
    try:
        yield engine
    finally:
        await engine.dispose()


async def _thread_of_statement(connection: AsyncConnection) -> int:
    return int((await connection.execute(text("SELECT thread_id()"))).scalar_one())


async def _labels(engine: AsyncEngine) -> list[str]:
    async with read_transaction(engine) as connection:
        rows = await connection.execute(text("SELECT label FROM item ORDER BY id"))
        return [str(label) for label in rows.scalars()]


async def test_a_write_transaction_runs_its_statements_on_the_event_loop_thread(engine):
    loop_thread = threading.get_ident()
    assert await run_transaction(engine, _thread_of_statement) == loop_thread


async def test_a_read_transaction_runs_its_statements_on_aiosqlite_thread(engine):
    async with read_transaction(engine) as connection:
        assert await _thread_of_statement(connection) != threading.get_ident()


async def test_a_writer_waiting_for_the_lock_leaves_the_event_loop_free(engine):
    # The first writer holds the lock until a third task has run. If the
    # second writer's BEGIN IMMEDIATE blocked the loop while it waited for
    # that lock, the third task could never run and nothing would commit.
    first_holds_lock = asyncio.Event()
    loop_ran_meanwhile = asyncio.Event()

    async def first(connection: AsyncConnection) -> None:
        await connection.execute(text("INSERT INTO item (label) VALUES ('first')"))
        first_holds_lock.set()
        await loop_ran_meanwhile.wait()

    async def second(connection: AsyncConnection) -> None:
        # It took the lock after waiting in aiosqlite's thread, with the busy
        # timeout restored after its zero-timeout try on the loop failed.
        busy_timeout = await connection.execute(text("PRAGMA busy_timeout"))
        assert busy_timeout.scalar_one() == SQLITE_BUSY_TIMEOUT_MS
        await connection.execute(text("INSERT INTO item (label) VALUES ('second')"))

    async def bystander() -> None:
        await first_holds_lock.wait()
        second_writer = asyncio.create_task(run_transaction(engine, second))
        await asyncio.sleep(0.05)  # the second writer is now waiting for the lock
        loop_ran_meanwhile.set()
        await second_writer

    await asyncio.wait_for(
        asyncio.gather(run_transaction(engine, first), bystander()), _LOOP_PROOF_TIMEOUT_S
    )
    assert await _labels(engine) == ["first", "second"]


async def test_a_writer_cancelled_while_waiting_for_the_lock_leaves_nothing_behind(engine):
    # Its BEGIN IMMEDIATE is still waiting in aiosqlite's thread when it is
    # cancelled; the rollback must queue behind it there, not race it.
    first_holds_lock = asyncio.Event()
    release_first = asyncio.Event()

    async def first(connection: AsyncConnection) -> None:
        await connection.execute(text("INSERT INTO item (label) VALUES ('first')"))
        first_holds_lock.set()
        await release_first.wait()

    async def never(connection: AsyncConnection) -> None:
        await connection.execute(text("INSERT INTO item (label) VALUES ('never')"))

    first_writer = asyncio.create_task(run_transaction(engine, first))
    await first_holds_lock.wait()
    waiting_writer = asyncio.create_task(run_transaction(engine, never))
    await asyncio.sleep(0.05)
    waiting_writer.cancel()
    # Its rollback waits behind its BEGIN, which waits for the first writer.
    release_first.set()
    await first_writer
    with pytest.raises(asyncio.CancelledError):
        await waiting_writer

    async def after(connection: AsyncConnection) -> None:
        await connection.execute(text("INSERT INTO item (label) VALUES ('after')"))

    for _ in range(3):  # every pooled connection still works
        await run_transaction(engine, after)
    assert await _labels(engine) == ["first", "after", "after", "after"]


async def test_a_failed_statement_rolls_back_and_the_next_transaction_runs_inline(engine):
    async def insert_twice(connection: AsyncConnection) -> None:
        await connection.execute(text("INSERT INTO item (id, label) VALUES (1, 'one')"))
        await connection.execute(text("INSERT INTO item (id, label) VALUES (1, 'again')"))

    with pytest.raises(LedgerRejected):
        await run_transaction(engine, insert_twice)
    assert await _labels(engine) == []
    assert await run_transaction(engine, _thread_of_statement) == threading.get_ident()


async def test_the_callers_exception_rolls_back_the_inline_statements(engine):
    async def insert_then_fail(connection: AsyncConnection) -> None:
        await connection.execute(text("INSERT INTO item (label) VALUES ('lost')"))
        raise _CallerFailed

    with pytest.raises(_CallerFailed):
        await run_transaction(engine, insert_then_fail)
    assert await _labels(engine) == []


async def test_executemany_and_row_counts_match_the_stock_driver(engine):
    async def insert_and_rename(connection: AsyncConnection) -> tuple[int, list[tuple[int, str]]]:
        await connection.execute(
            text("INSERT INTO item (id, label) VALUES (:id, :label)"),
            [{"id": number, "label": f"item {number}"} for number in range(1, 4)],
        )
        renamed = await connection.execute(
            text("UPDATE item SET label = label || '!' WHERE id >= :lowest"), {"lowest": 2}
        )
        rows = await connection.execute(text("SELECT id, label FROM item ORDER BY id"))
        return renamed.rowcount, [(int(row.id), str(row.label)) for row in rows]

    renamed_count, rows = await run_transaction(engine, insert_and_rename)
    assert renamed_count == 2
    assert rows == [(1, "item 1"), (2, "item 2!"), (3, "item 3!")]
    assert await _labels(engine) == ["item 1", "item 2!", "item 3!"]


_PAGE = "x" * 4_000
# Bounds for waiting on the checkpoint thread.
_CHECKPOINT_WAIT_S = 10


async def _add_page(connection: AsyncConnection) -> None:
    await connection.execute(text("INSERT INTO item (label) VALUES (:label)"), {"label": _PAGE})


async def _checkpoints_finished(
    checkpoints: sqlite_driver.BackgroundCheckpoints = sqlite_driver.background_checkpoints,
) -> None:
    finished = await asyncio.to_thread(_checkpoints_finished_blocking, checkpoints)
    assert finished, "the checkpoint thread did not finish"


def _checkpoints_finished_blocking(checkpoints: sqlite_driver.BackgroundCheckpoints) -> bool:
    """Whether the thread finished its work in time (also without an event loop:
    a forked child, a plain test)."""
    for _ in range(_CHECKPOINT_WAIT_S * 100):
        if not checkpoints.pending:
            return True
        time.sleep(0.01)
    return False


async def test_commits_run_inline_and_our_checkpoints_keep_the_wal_bounded(
    engine, tmp_path, monkeypatch
):
    # SQLite's automatic checkpoint is off (it would run inside a COMMIT on
    # the event loop's thread); the driver's own must keep the WAL from
    # growing with every commit. Each commit writes a page. Under load the
    # writer commits while a background checkpoint copies, which then ends
    # with frames left, and the WAL only starts over once every frame is
    # copied: here each background pass ends so (another connection appends
    # a frame right after it), and the writer's next commit must finish it.
    rounds = 4
    commits = rounds * SQLITE_CHECKPOINT_COMMITS
    database = str(tmp_path / "driver.sqlite3")
    hops: list[str] = []
    hop = sqlite_driver._Connection._hop
    checkpointed: list[str] = []
    checkpoint_file = sqlite_driver.checkpoint_file

    async def counted_hop(self: Any, function: Any, /, *args: Any) -> Any:
        hops.append(getattr(function, "__name__", ""))
        return await hop(self, function, *args)

    def checkpoint_while_appended(path: str) -> None:
        # A frame lands after the checkpoint's snapshot was fixed (a reader
        # holds it, as the checkpoint copies no further than that), exactly
        # as when the writer commits during the copy.
        checkpointed.append(path)
        with (
            contextlib.closing(sqlite3.connect(path, isolation_level=None)) as reader,
            contextlib.closing(sqlite3.connect(path, isolation_level=None)) as other,
        ):
            reader.execute("BEGIN")
            reader.execute("SELECT count(*) FROM item").fetchall()
            other.execute("INSERT INTO item (label) VALUES ('appended meanwhile')")
            checkpoint_file(path)
            reader.execute("COMMIT")

    monkeypatch.setattr(sqlite_driver._Connection, "_hop", counted_hop)
    monkeypatch.setattr(sqlite_driver, "checkpoint_file", checkpoint_while_appended)

    for _ in range(rounds):
        for _ in range(SQLITE_CHECKPOINT_COMMITS):
            await run_transaction(engine, _add_page)
        await _checkpoints_finished()
    await run_transaction(engine, _add_page)  # finishes the last round's checkpoint
    wal_pages = (tmp_path / "driver.sqlite3-wal").stat().st_size // 4096
    # Without checkpoints the WAL would hold two pages or more per commit (the
    # row's and its table's); with them it is reused after each checkpoint.
    assert wal_pages < commits
    assert checkpointed == [database] * rounds
    # The commits ran inline; the writer's finishing checkpoints hopped, one
    # after each background pass. (A BEGIN may also have waited in aiosqlite's
    # thread, "execute", while the stand-in writer above held the lock.)
    assert hops.count("_checkpoint_passive") == rounds
    assert set(hops) <= {"_checkpoint_passive", "execute"}, hops
    assert len(await _labels(engine)) == commits + 1 + rounds


async def test_a_commit_never_waits_for_a_checkpoint(engine, monkeypatch):
    # Run on the writer's connection, a checkpoint's fsyncs held up every
    # statement queued behind it: each contract step's p99 went from 4 to
    # 10 ms at 50 deals/s. Here a checkpoint is stuck until released: the
    # writer must go on committing, and ask for no second checkpoint of the
    # same file meanwhile.
    started, release, finished = threading.Event(), threading.Event(), threading.Event()
    checkpointed: list[str] = []

    def stuck_checkpoint(path: str) -> None:
        checkpointed.append(path)
        started.set()
        release.wait(_CHECKPOINT_WAIT_S)
        finished.set()

    monkeypatch.setattr(sqlite_driver, "checkpoint_file", stuck_checkpoint)

    async def commit_rounds(rounds: int) -> None:
        for _ in range(rounds * SQLITE_CHECKPOINT_COMMITS):
            await run_transaction(engine, _add_page)

    try:
        await asyncio.wait_for(commit_rounds(3), _CHECKPOINT_WAIT_S / 2)
        assert started.is_set()
        assert not finished.is_set(), "a commit waited for the checkpoint"
        assert len(checkpointed) == 1
    finally:
        release.set()
    await _checkpoints_finished()
    assert len(await _labels(engine)) == 3 * SQLITE_CHECKPOINT_COMMITS


def test_a_checkpoint_never_creates_a_database(tmp_path):
    # The file may be gone by the time the thread gets to it (a test's
    # temporary directory): that is an error, not a new empty database.
    missing = tmp_path / "gone.sqlite3"
    with pytest.raises(sqlite3.OperationalError):
        sqlite_driver.checkpoint_file(str(missing))
    assert not missing.exists()


async def test_a_failed_checkpoint_logs_one_line_and_the_thread_goes_on(tmp_path, caplog):
    missing = str(tmp_path / "gone.sqlite3")
    checkpoints = sqlite_driver.BackgroundCheckpoints()
    with caplog.at_level("WARNING", logger=sqlite_driver.__name__):
        for _ in range(2):
            checkpoints.request(missing)
            await _checkpoints_finished(checkpoints)
    # One line per failure, and the second request was served after the first failed.
    assert [record.message.count("\n") for record in caplog.records] == [0, 0]
    assert all("SQLite checkpoint" in record.message for record in caplog.records)


async def test_any_error_in_a_checkpoint_leaves_the_thread_serving(tmp_path, monkeypatch, caplog):
    # Were the thread to die, every file would stay pending for good and no
    # WAL would ever be copied again.
    calls: list[str] = []

    def fails_once(path: str) -> None:
        calls.append(path)
        if len(calls) == 1:
            raise RuntimeError("not an sqlite3 error")

    monkeypatch.setattr(sqlite_driver, "checkpoint_file", fails_once)
    checkpoints = sqlite_driver.BackgroundCheckpoints()
    with caplog.at_level("WARNING", logger=sqlite_driver.__name__):
        for name in ("first.sqlite3", "second.sqlite3"):
            checkpoints.request(str(tmp_path / name))
            await _checkpoints_finished(checkpoints)
    assert calls == [str(tmp_path / "first.sqlite3"), str(tmp_path / "second.sqlite3")]
    assert checkpoints.take_copied(str(tmp_path / "second.sqlite3"))
    assert not checkpoints.take_copied(str(tmp_path / "first.sqlite3"))
    assert len(caplog.records) == 1


def _checkpoint_in_forked_child(checkpoints: Any, path: str) -> None:
    checkpoints.request(path)
    if not _checkpoints_finished_blocking(checkpoints):
        sys.exit(1)
    sys.exit(0 if checkpoints.take_copied(path) else 2)


def test_a_forked_child_runs_its_own_checkpoints(tmp_path):
    # The parent's thread does not exist in a forked child: without a thread
    # of its own there, the child's files would stay pending for good.
    database = str(tmp_path / "forked.sqlite3")
    with contextlib.closing(sqlite3.connect(database)) as connection:
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("CREATE TABLE item (id INTEGER PRIMARY KEY)")
    checkpoints = sqlite_driver.BackgroundCheckpoints()
    checkpoints.request(database)  # the parent's thread is running now
    # Forked only once that thread waits for work: a fork while another
    # thread is inside SQLite may copy its locks held into the child.
    assert _checkpoints_finished_blocking(checkpoints)
    child = multiprocessing.get_context("fork").Process(
        target=_checkpoint_in_forked_child, args=(checkpoints, database)
    )
    child.start()
    child.join(_CHECKPOINT_WAIT_S * 2)
    if child.exitcode is None:
        child.kill()
        child.join()
    assert child.exitcode == 0


async def test_a_busy_database_is_skipped_without_a_warning(tmp_path, caplog):
    # Busy is what a checkpoint meets when another connection checkpoints or
    # closes the file (at every engine's dispose): not a fault to log.
    database = str(tmp_path / "busy.sqlite3")
    with contextlib.closing(sqlite3.connect(database, isolation_level=None)) as setup:
        setup.execute("PRAGMA journal_mode=WAL")
        setup.execute("CREATE TABLE item (id INTEGER PRIMARY KEY)")
    checkpoints = sqlite_driver.BackgroundCheckpoints()
    with contextlib.closing(sqlite3.connect(database, isolation_level=None)) as holder:
        holder.execute("PRAGMA locking_mode=EXCLUSIVE")
        holder.execute("INSERT INTO item DEFAULT VALUES")  # keeps the file locked
        with caplog.at_level("DEBUG", logger=sqlite_driver.__name__):
            checkpoints.request(database)
            await _checkpoints_finished(checkpoints)
    assert not checkpoints.take_copied(database)
    assert [record.levelname for record in caplog.records] == []
