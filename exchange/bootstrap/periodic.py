"""The worker's background jobs: one timer for all of them.

Every job runs a pass each tick (``SWEEP_INTERVAL_S``). A timer per job
woke an idle worker seven times a second, and each wake-up on cold caches
cost more than the pass it started: one wake-up a tick for all the jobs
took an idle `agentx up` from about 11 to 3.5 ms of CPU a second
(docs/PERFORMANCE.md, "Sixth pass").

A tick starts a pass of every job whose last pass has ended, side by side,
and does not wait for them: a slow pass (a relay waiting on JetStream) holds
up no other job, and a job is never run twice at once. A failing pass is
reported and the job runs again at the next tick.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Sequence

from exchange.limits import TIMER_JITTER_FRACTION

__all__ = ["Job", "run_periodically"]

Job = Callable[[], Awaitable[int]]  # one pass; what it did (due rows applied, notices sent)


async def run_periodically(
    interval_s: float,
    jobs: Sequence[Job],
    /,
    *,
    passed: Callable[[Job, int], None],
    failed: Callable[[Job, Exception], None],
) -> None:
    """Run ``jobs`` every ``interval_s`` (jittered) until cancelled; cancelling it
    cancels the passes under way."""
    passes: dict[int, asyncio.Task[None]] = {}

    async def pass_of(job: Job) -> None:
        try:
            passed(job, await job())
        except Exception as exc:
            failed(job, exc)

    try:
        while True:
            # Jittered, so that workers started together do not query in lockstep.
            jitter = random.uniform(-TIMER_JITTER_FRACTION, TIMER_JITTER_FRACTION)
            await asyncio.sleep(interval_s * (1 + jitter))
            for index, job in enumerate(jobs):
                last = passes.get(index)
                if last is None or last.done():
                    passes[index] = asyncio.create_task(pass_of(job))
    finally:
        for task in passes.values():
            task.cancel()
        await asyncio.gather(*passes.values(), return_exceptions=True)
