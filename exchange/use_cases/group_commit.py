"""Group commit: many callers' contract steps, one database transaction.

Every statement costs the event loop about 0.1 ms through SQLAlchemy async
(more on PostgreSQL, where each is a network round trip), every transaction
a commit, and one contract step in a transaction of its own takes 6 to 20
statements. A worker doing that tops out at a few hundred steps per second
whatever the load. A group applies many steps with a fixed number of
statements (``IN`` queries and ``executemany``).

How it works: callers ``submit`` a job and wait. One writer task takes every
queued job (at most ``jobs_max``) as a group and calls
``apply(connection, jobs)`` inside one transaction; ``apply`` returns one
outcome per job. After the commit each caller gets its own outcome. Nothing
waits for a group to fill: while one group is applied the next one queues,
so groups grow with the load and a lone job goes at once.

A lone job is a group of one, decided by the same ``apply``: there is no
other path. ``jobs_max=1`` (``--no-group-commit``) gives every job a
transaction of its own, for comparisons.

Guarantees (tested in ``tests/exchange/test_group_commit.py``):

* A caller is answered only after its group committed.
* ``apply`` decides each job as if it were applied alone: a refused job gets
  its error as its outcome and the others commit. A job it cannot decide so
  (a second step on one contract, which must see the first one's outcome)
  is answered ``DEFER``: it goes back to the head of the queue, in order,
  for the next group. ``apply`` never defers every job of a group, so each
  group makes progress.
* If the group's transaction fails as a whole, nothing of it was applied:
  each job is then applied as a group of one, so only the job at fault
  sees the error.
* If the worker dies, or a caller stops waiting, between the commit and the
  replies, the steps are committed; a retry meets the committed state (an
  open is answered ``quote_already_accepted`` with the contract's id, a step
  ``invalid_state``, and ``contract.get`` shows the outcome).
* Bounds: at most ``queue_max`` jobs wait; beyond that ``submit`` refuses at
  once with ``unavailable`` (nothing applied). A caller cancelled before its
  job was taken into a group is dropped from the queue: nothing of it is
  ever applied.
* ``close`` refuses new jobs, applies those already queued, then stops.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Final, Generic, TypeVar

from sqlalchemy.ext.asyncio import AsyncConnection

from exchange.errors import ErrorCode, ExchangeError
from exchange.limits import GROUP_JOBS_MAX, GROUP_QUEUE_MAX

__all__ = ["DEFER", "Defer", "GroupCommitter"]

log = logging.getLogger(__name__)

_Job = TypeVar("_Job")
_Outcome = TypeVar("_Outcome")


class Defer:
    """The outcome "decide this job in the next group" (it must see this group's outcome)."""

    def __repr__(self) -> str:
        return "DEFER"


DEFER: Final = Defer()


class GroupCommitter(Generic[_Job, _Outcome]):
    """One writer task applying queued jobs a group per transaction."""

    def __init__(
        self,
        run: Callable[
            [Callable[[AsyncConnection], Awaitable[list[_Outcome | Defer]]]],
            Awaitable[list[_Outcome | Defer]],
        ],
        apply: Callable[[AsyncConnection, list[_Job]], Awaitable[list[_Outcome | Defer]]],
        /,
        *,
        jobs_max: int = GROUP_JOBS_MAX,
        queue_max: int = GROUP_QUEUE_MAX,
        after_commit: Callable[[list[_Job]], Awaitable[None]] | None = None,
    ) -> None:
        """``run`` runs a unit of work in one transaction (``ExchangeContext.run``)."""
        assert 1 <= jobs_max <= GROUP_JOBS_MAX and jobs_max <= queue_max <= GROUP_QUEUE_MAX
        self._run = run
        self._apply = apply
        self._jobs_max = jobs_max
        self._queue_max = queue_max
        # Between a group's commit and its replies (tests cut the process there).
        self.after_commit = after_commit
        self._queue: deque[tuple[_Job, asyncio.Future[_Outcome]]] = deque()
        self._has_work = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None
        self._closed = False
        self.groups_applied = 0
        self.jobs_applied = 0
        self.jobs_deferred = 0
        self.groups_failed = 0
        # Told each committed group's size (the worker's metrics); None: nobody asks.
        self.observe_group_size: Callable[[int], None] | None = None

    @property
    def jobs_max(self) -> int:
        return self._jobs_max

    async def submit(self, job: _Job, /) -> _Outcome:
        """Queue ``job`` and wait for its outcome (after its group's commit)."""
        if self._closed:
            raise ExchangeError(ErrorCode.UNAVAILABLE, "this worker is stopping; retry")
        if len(self._queue) >= self._queue_max:
            raise ExchangeError(ErrorCode.UNAVAILABLE, "the exchange is overloaded; retry later")
        if self._writer is None:
            self._writer = asyncio.create_task(self._write(), name="exchange-group-commit")
        future: asyncio.Future[_Outcome] = asyncio.get_running_loop().create_future()
        self._queue.append((job, future))
        self._has_work.set()
        return await future

    async def close(self) -> None:
        """Refuse new jobs, apply the queued ones, stop the writer."""
        self._closed = True
        self._has_work.set()
        if self._writer is not None:
            await self._writer
            self._writer = None

    async def _write(self) -> None:
        group: list[tuple[_Job, asyncio.Future[_Outcome]]] = []
        try:
            while True:
                await self._has_work.wait()
                group = self._take_group()
                if not group:
                    self._has_work.clear()
                    if self._closed:
                        return
                    continue
                await self._apply_group(group)
        except BaseException:
            # Cancelled (the worker stops hard) or a bug: no caller waits forever.
            in_flight = ExchangeError(
                ErrorCode.UNAVAILABLE, "the worker stopped; the step may have been applied"
            )
            for _, future in group:
                if not future.done():
                    future.set_exception(in_flight)
            not_applied = ExchangeError(ErrorCode.UNAVAILABLE, "the worker stopped; retry")
            for _, future in self._queue:
                if not future.done():
                    future.set_exception(not_applied)
            self._queue.clear()
            self._closed = True
            raise

    def _take_group(self) -> list[tuple[_Job, asyncio.Future[_Outcome]]]:
        group: list[tuple[_Job, asyncio.Future[_Outcome]]] = []
        while self._queue and len(group) < self._jobs_max:
            job, future = self._queue.popleft()
            if not future.done():  # a caller cancelled before this point is dropped
                group.append((job, future))
        return group

    async def _apply_group(self, group: list[tuple[_Job, asyncio.Future[_Outcome]]]) -> None:
        try:
            outcomes = await self._commit([job for job, _ in group])
        except Exception:
            # Nothing of the group was applied: each job goes as a group of
            # one, so only the one at fault sees the error.
            self.groups_failed += 1
            log.warning(
                "a group of %d contract steps failed; applying each alone",
                len(group),
                exc_info=True,
            )
            for waiting in group:
                await self._apply_lone(waiting)
            return
        if self.after_commit is not None:
            await self.after_commit([job for job, _ in group])
        deferred = [
            waiting for waiting, outcome in zip(group, outcomes, strict=True) if outcome is DEFER
        ]
        assert len(deferred) < len(group), "a group must make progress"
        # Back to the head of the queue, in their order, for the next group.
        self._queue.extendleft(reversed(deferred))
        self.jobs_deferred += len(deferred)
        for (_, future), outcome in zip(group, outcomes, strict=True):
            if not isinstance(outcome, Defer) and not future.done():
                future.set_result(outcome)

    async def _apply_lone(self, waiting: tuple[_Job, asyncio.Future[_Outcome]]) -> None:
        job, future = waiting
        try:
            (outcome,) = await self._commit([job])
        except Exception as exc:
            if not future.done():
                future.set_exception(exc)
            return
        if self.after_commit is not None:
            await self.after_commit([job])
        assert not isinstance(outcome, Defer), "a group of one has nothing to wait for"
        if not future.done():
            future.set_result(outcome)

    async def _commit(self, jobs: list[_Job]) -> list[_Outcome | Defer]:
        async def work(connection: AsyncConnection) -> list[_Outcome | Defer]:
            # Called again on a retried transaction: outcomes are rebuilt each time.
            return await self._apply(connection, jobs)

        outcomes = await self._run(work)
        assert len(outcomes) == len(jobs)
        self.groups_applied += 1
        self.jobs_applied += sum(not isinstance(outcome, Defer) for outcome in outcomes)
        if self.observe_group_size is not None:
            self.observe_group_size(len(jobs))
        return outcomes
