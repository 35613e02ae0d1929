"""``BatchingLedger``: many callers' transfers, one database transaction (group commit).

Under SQLAlchemy async every statement is a hop to the driver's thread, so a
ledger that commits each call alone tops out at a few hundred transfers per
second. The batching writer keeps the ledger's rules and changes only how
calls reach the database: callers put their batches in a bounded queue; one
writer task takes as many as fit in a group (``group_size_max`` transfers)
and applies them in one transaction through ``SqlLedger.create_transfer_batches``,
which loads everything the group needs with a few ``IN (...)`` queries,
plans the batches one after the other in the pure core and writes the plan
with one ``executemany`` per table. Each caller gets exactly its own
outcomes, the ones it would have got from ``SqlLedger.create_transfers``.

The guarantees are those of unbatched calls, because each batch is planned
as if it were applied alone right after the batches before it:

* **Idempotency**: the transfer id is the key, within a group (the second
  use of an id in a group is a replay of the first), across groups and
  across restarts (the stored transfers and failures decide, not memory).
* **Linked chains** end where the caller's batch ends; a chain never spans
  two callers, and a failing chain leaves the other callers' chains alone.
* **Limits, balances, invariants**: the same planner decides, with the same
  assertions, on the same locked rows.
* **Isolation of failures**: if a group's transaction fails for anything but
  an unavailable database (a write the database refuses, an assertion), each
  batch of the group is applied again in its own transaction, so only the
  caller whose batch fails sees the error.
* **Crash safety**: an answer is sent only after its group committed. If the
  process dies, or a caller stops waiting, between the commit and the reply,
  the caller retries with the same ids and gets the committed outcomes back
  (``replayed=True``).

How a caller uses it::

    batching = BatchingLedger(SqlLedger(engine))
    await batching.start()                      # or: async with BatchingLedger(...)
    outcomes = await batching.create_transfers([transfer])  # waits for its group
    ...
    await batching.close()                      # drains the queue, then stops

Bounds and errors (every limit in ``wallet.limits``):

* The queue holds at most ``queue_transfers_max`` transfers. A call that
  finds no room **waits** for it, in arrival order. At most
  ``BATCHING_WAITING_CALLS_MAX`` calls wait for room; beyond that, a call is
  refused at once with ``LedgerOverloaded``.
* Every call waits at most ``call_timeout_s`` in all (one timeout for every
  call of a writer). A call the writer has not taken into a group by then
  gets ``LedgerOverloaded``: nothing of it was applied, nor ever will be. A
  call whose group is running by then gets ``LedgerTimeout``: its transfers
  may have been applied, so retry with the same ids. A cancelled caller is
  like a timed-out one: if the writer had not taken its batch yet, it never
  will.
* ``close()`` refuses new calls (``LedgerClosed``) and calls still waiting
  for room, applies everything already queued, and stops the writer. If
  draining takes longer than its timeout the writer is cancelled: calls whose
  group was in flight get ``LedgerUnavailable`` (outcome unknown, retry with
  the same ids), queued calls get ``LedgerClosed`` (not applied).
* A database that stays unavailable fails every caller of the group with
  ``LedgerUnavailable``, as it would fail each unbatched call.

The unit-of-work mode: batching is for calls **without** an outer
transaction. ``create_transfers(..., connection=c)`` does not go through the
writer at all: it runs ``SqlLedger.create_transfers`` inside the caller's
transaction, so that the caller's own writes and the transfers still commit
together. Never call without ``connection=`` while holding a write
transaction open on the same SQLite database: the writer would wait for the
caller's write lock while the caller waits for the writer (the same holds
for a plain ``SqlLedger`` call); the timeouts end that wait.

One writer per process is the intended use; several processes (exchange
workers), each with its own writer, are as safe as several unbatched
callers: their groups are transactions that lock the same way.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from sqlalchemy.ext.asyncio import AsyncConnection

from wallet.errors import (
    LedgerClosed,
    LedgerOverloaded,
    LedgerTimeout,
    LedgerUnavailable,
    ValueOutOfRange,
)
from wallet.ledger import SqlLedger
from wallet.limits import (
    BATCH_SIZE_MAX,
    BATCHING_CALL_TIMEOUT_S_DEFAULT,
    BATCHING_CALL_TIMEOUT_S_MAX,
    BATCHING_CLOSE_TIMEOUT_S_DEFAULT,
    BATCHING_GROUP_SIZE_DEFAULT,
    BATCHING_QUEUE_TRANSFERS_DEFAULT,
    BATCHING_QUEUE_TRANSFERS_MAX,
    BATCHING_WAITING_CALLS_MAX,
)
from wallet.model import NewTransfer, TransferOutcome, TransferResult

__all__ = ["BatchingLedger", "WriterState"]

log = logging.getLogger(__name__)


class WriterState(StrEnum):
    """The writer's life: ``new`` → ``running`` → ``closing`` → ``closed``."""

    NEW = "new"
    RUNNING = "running"
    CLOSING = "closing"
    CLOSED = "closed"


class _Stage(StrEnum):
    """Where a call is: waiting for room, in the queue, or taken into a group."""

    WAITING = "waiting"
    QUEUED = "queued"
    TAKEN = "taken"


@dataclass(eq=False, slots=True)
class _Call:
    """One caller's batch and the future its outcomes are delivered to."""

    transfers: Sequence[NewTransfer]
    reply: asyncio.Future[list[TransferOutcome]]
    # On the event loop's clock.
    deadline_s: float
    stage: _Stage = _Stage.WAITING


class BatchingLedger:
    """Group commit over a ``SqlLedger``; see the module docstring."""

    def __init__(
        self,
        ledger: SqlLedger,
        /,
        *,
        group_size_max: int = BATCHING_GROUP_SIZE_DEFAULT,
        queue_transfers_max: int = BATCHING_QUEUE_TRANSFERS_DEFAULT,
        call_timeout_s: float = BATCHING_CALL_TIMEOUT_S_DEFAULT,
    ) -> None:
        if not 1 <= group_size_max <= BATCH_SIZE_MAX:
            raise ValueOutOfRange(
                "group_size_max", group_size_max, minimum=1, maximum=BATCH_SIZE_MAX
            )
        if not BATCH_SIZE_MAX <= queue_transfers_max <= BATCHING_QUEUE_TRANSFERS_MAX:
            raise ValueOutOfRange(
                "queue_transfers_max",
                queue_transfers_max,
                minimum=BATCH_SIZE_MAX,
                maximum=BATCHING_QUEUE_TRANSFERS_MAX,
            )
        _check_timeout("call_timeout_s", call_timeout_s)
        self._ledger = ledger
        self._group_size_max = group_size_max
        self._queue_transfers_max = queue_transfers_max
        self._call_timeout_s = call_timeout_s
        self._state = WriterState.NEW
        # Calls the writer will take, oldest first, and their transfer count.
        self._queue: deque[_Call] = deque()
        self._queued_transfers = 0
        # Calls waiting for room in the queue, oldest first.
        self._waiting: deque[_Call] = deque()
        # The group whose transaction is running.
        self._in_flight: list[_Call] = []
        self._work_ready = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None
        # The one timer for the oldest call's deadline (see ``_reap``).
        self._reaper: asyncio.TimerHandle | None = None

    @property
    def ledger(self) -> SqlLedger:
        """The ledger underneath, for reads and unbatched writes."""
        return self._ledger

    @property
    def state(self) -> WriterState:
        return self._state

    @property
    def queued_transfers(self) -> int:
        return self._queued_transfers

    async def start(self) -> None:
        """Start the writer task on the running event loop."""
        assert self._state is not WriterState.RUNNING, "start() was called twice"
        if self._state is not WriterState.NEW:
            raise LedgerClosed(state=self._state.value)
        self._state = WriterState.RUNNING
        self._writer = asyncio.create_task(self._run_writer(), name="wallet-batching-writer")
        self._writer.add_done_callback(self._on_writer_done)

    async def __aenter__(self) -> BatchingLedger:
        await self.start()
        return self

    async def __aexit__(self, *_exc_info: object) -> None:
        await self.close()

    async def create_transfers(
        self,
        transfers: Sequence[NewTransfer],
        /,
        *,
        connection: AsyncConnection | None = None,
    ) -> list[TransferOutcome]:
        """The outcomes ``SqlLedger.create_transfers`` would give, via the writer.

        With ``connection=`` the call joins the caller's transaction and does
        not use the writer; see the module docstring.
        """
        if connection is not None:
            return await self._ledger.create_transfers(transfers, connection=connection)
        if not transfers:
            return []
        if len(transfers) > BATCH_SIZE_MAX:
            return [TransferOutcome(t.id, TransferResult.BATCH_TOO_LARGE) for t in transfers]
        if self._state is not WriterState.RUNNING:
            raise LedgerClosed(state=self._state.value)
        loop = asyncio.get_running_loop()
        deadline_s = loop.time() + self._call_timeout_s
        call = _Call(tuple(transfers), loop.create_future(), deadline_s)
        self._submit(call)
        if self._reaper is None:
            self._reaper = loop.call_at(deadline_s, self._reap)
        try:
            # A cancelled caller cancels ``call.reply``: the writer then skips
            # the call if it has not taken it yet.
            return await call.reply
        finally:
            if call.stage is _Stage.WAITING and call in self._waiting:
                self._waiting.remove(call)

    async def close(self, *, timeout_s: float = BATCHING_CLOSE_TIMEOUT_S_DEFAULT) -> None:
        """Refuse new calls, apply the queued ones, stop the writer. Idempotent."""
        _check_timeout("timeout_s", timeout_s)
        if self._state is WriterState.NEW:
            self._state = WriterState.CLOSED
        if self._state is WriterState.CLOSED:
            return
        self._state = WriterState.CLOSING
        while self._waiting:
            _refuse(self._waiting.popleft(), LedgerClosed(state=self._state.value))
        # Wake the writer so that it sees the state once the queue is empty.
        self._work_ready.set()
        writer = self._writer
        assert writer is not None
        try:
            await asyncio.wait_for(asyncio.shield(writer), timeout_s)
        except TimeoutError:
            writer.cancel()
            await asyncio.wait([writer])
        self._stop()

    def _submit(self, call: _Call) -> None:
        if not self._waiting and self._has_room(len(call.transfers)):
            self._enqueue(call)
        elif len(self._waiting) < BATCHING_WAITING_CALLS_MAX:
            self._waiting.append(call)
        else:
            raise LedgerOverloaded(queue_transfers_max=self._queue_transfers_max, waited_s=0.0)

    def _reap(self) -> None:
        """Time out every call past its deadline, then wait for the next deadline.

        One timer for the oldest call rather than one per call (measured at
        about 6 % of the event loop's time under load): every call of a
        writer has the same timeout, so deadlines grow in arrival order, and
        the calls are held in arrival order — the group in flight, then the
        queue, then the calls waiting for room.
        """
        self._reaper = None
        now_s = asyncio.get_running_loop().time()
        expired: list[_Call] = []
        next_deadline_s: float | None = None
        for call in itertools.chain(self._in_flight, self._queue, self._waiting):
            if call.reply.done():
                continue
            if call.deadline_s > now_s:
                next_deadline_s = call.deadline_s
                break
            expired.append(call)
        for call in expired:
            self._expire(call)
        if any(call.stage is _Stage.QUEUED for call in expired):
            self._drop_answered_from_queue()
        if next_deadline_s is not None and self._state is not WriterState.CLOSED:
            self._reaper = asyncio.get_running_loop().call_at(next_deadline_s, self._reap)

    def _expire(self, call: _Call) -> None:
        if call.stage is _Stage.TAKEN:
            # Its group is running: it may yet be applied.
            call.reply.set_exception(LedgerTimeout(timeout_s=self._call_timeout_s))
            return
        if call.stage is _Stage.WAITING:
            self._waiting.remove(call)
        # Not taken, so never applied: the writer skips an answered call.
        call.reply.set_exception(
            LedgerOverloaded(
                queue_transfers_max=self._queue_transfers_max, waited_s=self._call_timeout_s
            )
        )

    def _drop_answered_from_queue(self) -> None:
        """Free the room of queued calls that were answered without the writer."""
        self._queue = deque(call for call in self._queue if not call.reply.done())
        self._queued_transfers = sum(len(call.transfers) for call in self._queue)
        self._admit_waiting()

    def _has_room(self, size: int) -> bool:
        return self._queued_transfers + size <= self._queue_transfers_max

    def _enqueue(self, call: _Call) -> None:
        assert call.stage is _Stage.WAITING
        call.stage = _Stage.QUEUED
        self._queue.append(call)
        self._queued_transfers += len(call.transfers)
        assert self._queued_transfers <= self._queue_transfers_max
        self._work_ready.set()

    def _admit_waiting(self) -> None:
        """Move waiting calls into the queue, in arrival order, while they fit."""
        while self._waiting and self._has_room(len(self._waiting[0].transfers)):
            call = self._waiting.popleft()
            if not call.reply.done():
                self._enqueue(call)

    def _take_group(self) -> list[_Call]:
        """The oldest queued calls, as many as fit in a group (at least one)."""
        group: list[_Call] = []
        size = 0
        while self._queue:
            call = self._queue[0]
            call_size = len(call.transfers)
            if group and size + call_size > self._group_size_max:
                break
            self._queue.popleft()
            self._queued_transfers -= call_size
            # A caller that timed out or was cancelled before its batch was
            # taken never has it applied.
            if not call.reply.done():
                call.stage = _Stage.TAKEN
                group.append(call)
                size += call_size
        assert self._queued_transfers >= 0
        # A call larger than a group (at most BATCH_SIZE_MAX) forms a group alone.
        assert size <= self._group_size_max or len(group) == 1
        self._admit_waiting()
        return group

    async def _run_writer(self) -> None:
        while True:
            group = self._take_group()
            if group:
                self._in_flight = group
                await self._apply(group)
                self._in_flight = []
            elif self._state is WriterState.CLOSING and not self._queue:
                return
            else:
                self._work_ready.clear()
                await self._work_ready.wait()

    async def _apply(self, group: list[_Call]) -> None:
        try:
            outcomes = await self._ledger.create_transfer_batches([c.transfers for c in group])
        except LedgerUnavailable as exc:
            for call in group:
                _refuse(call, _unavailable_copy(exc))
            return
        except Exception as exc:
            if len(group) == 1:
                _refuse(group[0], exc)
                return
            # One batch may be what the database refused: apply each alone,
            # so that only its caller sees the error.
            log.warning("a group of %d calls failed (%r); applying each alone", len(group), exc)
            for call in group:
                await self._apply([call])
            return
        for call, call_outcomes in zip(group, outcomes, strict=True):
            assert [o.id for o in call_outcomes] == [t.id for t in call.transfers]
            if not call.reply.done():
                call.reply.set_result(call_outcomes)

    def _on_writer_done(self, writer: asyncio.Task[None]) -> None:
        if not writer.cancelled() and writer.exception() is not None:
            log.error("the batching writer stopped", exc_info=writer.exception())
        self._stop()

    def _stop(self) -> None:
        """Whatever ended the writer, no caller is left waiting. Idempotent."""
        self._state = WriterState.CLOSED
        if self._reaper is not None:
            self._reaper.cancel()
            self._reaper = None
        for call in self._in_flight:
            _refuse(
                call,
                LedgerUnavailable(
                    "the batching writer stopped while applying this call; "
                    "it may have been applied: retry with the same ids"
                ),
            )
        self._in_flight = []
        for waiting in (self._queue, self._waiting):
            while waiting:
                _refuse(waiting.popleft(), LedgerClosed(state=self._state.value))
        self._queued_transfers = 0


def _refuse(call: _Call, error: BaseException) -> None:
    if not call.reply.done():
        call.reply.set_exception(error)


def _unavailable_copy(exc: LedgerUnavailable) -> LedgerUnavailable:
    # One exception object per caller: raising a shared one in many tasks
    # would interleave their tracebacks.
    copy = LedgerUnavailable(exc.reason, attempts=exc.attempts)
    copy.__cause__ = exc
    return copy


def _check_timeout(name: str, timeout_s: float) -> None:
    if not 0 < timeout_s <= BATCHING_CALL_TIMEOUT_S_MAX:
        raise ValueOutOfRange(name, timeout_s, minimum=0, maximum=BATCHING_CALL_TIMEOUT_S_MAX)
