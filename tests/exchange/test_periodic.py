"""The worker's background jobs share one timer: every job runs each tick, a slow
pass holds up no other job and is not started twice, a failing one runs again."""

from __future__ import annotations

import asyncio

from exchange.bootstrap.periodic import Job, run_periodically

TICK_S = 0.02
TICKS_MAX = 200  # every wait below is bounded by this many ticks


class Recorder:
    def __init__(self) -> None:
        self.passed: dict[str, list[int]] = {}
        self.failed: dict[str, list[str]] = {}

    def on_pass(self, job: Job, done: int) -> None:
        self.passed.setdefault(job.__name__, []).append(done)

    def on_failure(self, job: Job, error: Exception) -> None:
        self.failed.setdefault(job.__name__, []).append(str(error))


async def until(condition) -> None:
    for _ in range(TICKS_MAX):
        if condition():
            return
        await asyncio.sleep(TICK_S)
    raise AssertionError("not within the bound")


def periodically(recorder: Recorder, *jobs: Job) -> asyncio.Task[None]:
    return asyncio.create_task(
        run_periodically(TICK_S, jobs, passed=recorder.on_pass, failed=recorder.on_failure)
    )


async def test_a_slow_pass_holds_up_no_other_job_and_is_not_started_twice():
    recorder = Recorder()
    release = asyncio.Event()
    slow_started = 0

    async def slow() -> int:
        nonlocal slow_started
        slow_started += 1
        await release.wait()
        return 7

    async def quick() -> int:
        return 1

    loop = periodically(recorder, slow, quick)
    try:
        # Many ticks pass while the slow pass waits: the quick job runs at each.
        await until(lambda: len(recorder.passed.get("quick", [])) >= 5)
        assert slow_started == 1 and "slow" not in recorder.passed
        release.set()
        # Passes keep coming at every tick: wait for two, not for exactly two.
        await until(lambda: len(recorder.passed.get("slow", [])) >= 2)
        assert set(recorder.passed["slow"]) == {7} and slow_started >= 2
    finally:
        loop.cancel()
        await asyncio.gather(loop, return_exceptions=True)


async def test_a_failing_pass_is_reported_and_runs_again_beside_the_others():
    recorder = Recorder()
    attempts = 0

    async def flaky() -> int:
        nonlocal attempts
        attempts += 1
        if attempts <= 2:
            raise RuntimeError(f"down {attempts}")
        return 3

    async def steady() -> int:
        return 0

    loop = periodically(recorder, flaky, steady)
    try:
        await until(lambda: "flaky" in recorder.passed)
        assert set(recorder.passed["flaky"]) == {3}
        assert recorder.failed == {"flaky": ["down 1", "down 2"]}
        assert len(recorder.passed["steady"]) >= 3
    finally:
        loop.cancel()
        await asyncio.gather(loop, return_exceptions=True)


async def test_stopping_the_loop_cancels_the_passes_under_way():
    recorder = Recorder()
    started = asyncio.Event()
    cancelled = asyncio.Event()

    async def waiting() -> int:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return 0

    loop = periodically(recorder, waiting)
    await asyncio.wait_for(started.wait(), TICKS_MAX * TICK_S)
    loop.cancel()
    await asyncio.gather(loop, return_exceptions=True)
    assert cancelled.is_set() and recorder.passed == {}
