"""The group committer on its own: grouping, deferral, failure, bounds, shutdown.

These tests drive ``GroupCommitter`` with a stand-in for the transaction
(``run`` calls the work with no connection): what is under test is the
queueing and answering, not a database. The committer over a real database
and a real worker is tested in ``test_group_commit_contracts.py``.
"""

from __future__ import annotations

import asyncio

import pytest

from exchange.errors import ExchangeError
from exchange.use_cases.group_commit import DEFER, GroupCommitter


class Recorder:
    """An ``apply`` that records each group and answers every job with ``job * 10``."""

    def __init__(self, *, fail_when: int | None = None, delay_s: float = 0.0) -> None:
        self.groups: list[list[int]] = []
        self.fail_when = fail_when
        self.delay_s = delay_s

    async def apply(self, _connection, jobs):
        await asyncio.sleep(self.delay_s)
        if self.fail_when in jobs:
            raise RuntimeError("the database refused the group")
        self.groups.append(list(jobs))
        return [job * 10 for job in jobs]


async def run_in_transaction(work):
    return await work(None)


def committer(recorder: Recorder, **options) -> GroupCommitter:
    return GroupCommitter(run_in_transaction, recorder.apply, **options)


async def test_concurrent_jobs_form_groups_and_each_caller_gets_its_own_outcome():
    recorder = Recorder(delay_s=0.01)
    groups = committer(recorder)
    outcomes = await asyncio.gather(*(groups.submit(job) for job in range(100)))
    assert outcomes == [job * 10 for job in range(100)]
    # Submitted together, they are applied together.
    assert len(recorder.groups) < 10
    assert sorted(job for group in recorder.groups for job in group) == list(range(100))
    assert (groups.groups_applied, groups.jobs_applied) == (len(recorder.groups), 100)
    await groups.close()


async def test_groups_never_exceed_jobs_max():
    recorder = Recorder(delay_s=0.01)
    groups = committer(recorder, jobs_max=7)
    await asyncio.gather(*(groups.submit(job) for job in range(50)))
    assert max(len(group) for group in recorder.groups) == 7
    await groups.close()


async def test_a_failed_group_applies_each_job_as_a_group_of_one():
    recorder = Recorder(fail_when=3, delay_s=0.01)
    groups = committer(recorder)
    first = asyncio.create_task(groups.submit(0))
    await asyncio.sleep(0)  # job 0 goes alone; 1..5 queue into the failing group
    rest = [asyncio.create_task(groups.submit(job)) for job in range(1, 6)]
    assert await first == 0
    answers = await asyncio.gather(*rest, return_exceptions=True)
    # Only the job at fault sees the error; the others commit, each on its own.
    assert answers[:2] == [10, 20] and answers[3:] == [40, 50]
    assert isinstance(answers[2], RuntimeError)
    assert recorder.groups == [[0], [1], [2], [4], [5]]
    assert groups.groups_failed == 1
    assert await groups.submit(8) == 80
    await groups.close()


async def test_a_deferred_job_is_decided_in_the_next_group_in_its_order():
    """Jobs of one key (here: equal tens) wait for the one before them."""
    groups_seen: list[list[int]] = []

    async def first_of_each_key(_connection, jobs):
        groups_seen.append(list(jobs))
        await asyncio.sleep(0.01)
        keys: set[int] = set()
        outcomes = []
        for job in jobs:
            outcomes.append(DEFER if job // 10 in keys else job)
            keys.add(job // 10)
        return outcomes

    groups = GroupCommitter(run_in_transaction, first_of_each_key)
    first = asyncio.create_task(groups.submit(1))
    await asyncio.sleep(0)
    rest = [asyncio.create_task(groups.submit(job)) for job in (11, 12, 21, 13)]
    assert await asyncio.gather(first, *rest) == [1, 11, 12, 21, 13]
    assert groups_seen == [[1], [11, 12, 21, 13], [12, 13], [13]]
    assert (groups.jobs_applied, groups.jobs_deferred) == (5, 3)
    await groups.close()


async def test_a_group_size_of_one_applies_every_job_in_its_own_transaction():
    recorder = Recorder(delay_s=0.001)
    groups = committer(recorder, jobs_max=1)
    assert await asyncio.gather(*(groups.submit(job) for job in range(5))) == [0, 10, 20, 30, 40]
    assert recorder.groups == [[0], [1], [2], [3], [4]]
    await groups.close()


async def test_a_full_queue_refuses_at_once_with_unavailable():
    recorder = Recorder(delay_s=0.05)
    groups = committer(recorder, jobs_max=2, queue_max=4)
    running = asyncio.create_task(groups.submit(0))
    await asyncio.sleep(0.01)  # job 0 is being applied; the queue is empty
    queued = [asyncio.create_task(groups.submit(job)) for job in range(1, 5)]
    await asyncio.sleep(0)
    with pytest.raises(ExchangeError) as refused:
        await groups.submit(99)
    assert refused.value.code == "unavailable"
    assert await asyncio.gather(running, *queued) == [0, 10, 20, 30, 40]
    assert 99 not in [job for group in recorder.groups for job in group]
    await groups.close()


async def test_a_caller_cancelled_before_its_group_was_taken_is_never_applied():
    recorder = Recorder(delay_s=0.05)
    groups = committer(recorder)
    running = asyncio.create_task(groups.submit(0))
    await asyncio.sleep(0.01)
    abandoned = asyncio.create_task(groups.submit(1))
    kept = asyncio.create_task(groups.submit(2))
    await asyncio.sleep(0)
    abandoned.cancel()
    assert await asyncio.gather(running, kept) == [0, 20]
    assert recorder.groups == [[0], [2]]
    await groups.close()


async def test_close_applies_the_queued_jobs_then_refuses_new_ones():
    recorder = Recorder(delay_s=0.02)
    groups = committer(recorder)
    submitted = [asyncio.create_task(groups.submit(job)) for job in range(5)]
    await asyncio.sleep(0)
    await groups.close()
    assert [task.result() for task in submitted] == [0, 10, 20, 30, 40]
    with pytest.raises(ExchangeError) as refused:
        await groups.submit(6)
    assert refused.value.code == "unavailable"


async def test_a_cancelled_writer_leaves_no_caller_waiting():
    started = asyncio.Event()

    async def never_commits(_connection, jobs):
        started.set()
        await asyncio.sleep(3600)
        return jobs

    groups = GroupCommitter(run_in_transaction, never_commits)
    in_flight = asyncio.create_task(groups.submit(1))
    await started.wait()
    queued = asyncio.create_task(groups.submit(2))
    await asyncio.sleep(0)
    groups._writer.cancel()
    answers = await asyncio.gather(in_flight, queued, return_exceptions=True)
    assert [type(answer) for answer in answers] == [ExchangeError, ExchangeError]
    # In flight: the outcome is unknown; queued: never applied.
    assert "may have been applied" in answers[0].message
    assert "retry" in answers[1].message
    with pytest.raises(ExchangeError):
        await groups.submit(3)


async def test_after_commit_runs_between_the_commit_and_the_replies():
    recorder = Recorder()
    groups = committer(recorder)
    seen: list[list[int]] = []

    async def after_commit(jobs):
        # Committed (recorded) but not yet answered.
        assert recorder.groups[-1] == jobs
        seen.append(list(jobs))

    groups.after_commit = after_commit
    assert await groups.submit(4) == 40
    assert seen == [[4]]
    await groups.close()
