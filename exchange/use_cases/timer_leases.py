"""One worker at a time runs each background pass: the sweeps and the outbox relay.

Every worker runs the same loops, but a pass of a job (``contracts.sweep``,
``outbox.relay``, ...) runs only on the worker holding that job's lease in
the database (exchange/adapters/timer_lease_store.py). The others wake, find the
lease held and go back to sleep, so three workers do one pass per interval
instead of three passes in lockstep racing for the same rows. The holder
renews its lease by running again once half its time to live has gone (a
renewal is a write transaction: renewing on every pass cost five a second,
one per job); if it dies or stalls, the lease lapses after its time to live
and the next worker to wake takes the job over.

The lease is about wasted work and log noise, not about money: every timer
step locks its row and re-checks it before applying (so two passes that do
overlap, e.g. across a lapse, still apply each step once), and a notice
published twice is dropped by JetStream's duplicate window.

Clocks: a lease expires by the clock of the worker asking, so workers'
clocks must agree to well within the time to live (several sweep
intervals); a worker whose clock runs ahead by more takes jobs early, which
costs overlapping passes, never a second step.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
from collections.abc import Awaitable, Callable

from sqlalchemy.ext.asyncio import AsyncConnection

from exchange.adapters import timer_lease_store
from exchange.adapters.timer_lease_store import TimerLease
from exchange.use_cases.exchange_context import ExchangeContext

__all__ = ["TimerLease", "TimerLeases", "worker_instance_id"]

log = logging.getLogger(__name__)

# Host names are cut to this length in an instance id (the id is logged and stored).
HOST_NAME_CHARS_MAX = 64


def worker_instance_id() -> str:
    """A new id for this worker process: host, process id and a random part.

    The random part tells a restarted worker from its predecessor on the same
    host and process id; the rest tells an operator where the holder runs.
    """
    return f"{socket.gethostname()[:HOST_NAME_CHARS_MAX]}/{os.getpid()}/{secrets.token_hex(4)}"


class TimerLeases:
    """The leases one worker holds, or tries to, on the background jobs."""

    def __init__(self, context: ExchangeContext, /, *, holder: str, ttl_s: float) -> None:
        assert holder and ttl_s > 0
        self._context = context
        self.holder = holder
        self._ttl_ms = max(1, round(ttl_s * 1000))
        # The jobs this worker held after its last attempt (a change is logged
        # once), each with when it took or last renewed the lease, by its clock.
        self._held: dict[str, int] = {}

    async def run_if_leader(self, job: str, run_pass: Callable[[], Awaitable[int]], /) -> int:
        """Run one pass of ``job`` if this worker holds its lease (taking or renewing it
        first); what the pass did, or 0 when another worker holds the job."""
        if not self._renewed_lately(job) and not await self._acquire(job):
            return 0
        return await run_pass()

    def _renewed_lately(self, job: str) -> bool:
        """Whether this worker renewed its lease on ``job`` less than half a time to
        live ago: nobody else can have taken it since (it runs a whole time to
        live), so the pass needs no transaction to know it may run."""
        renewed_at_ms = self._held.get(job)
        if renewed_at_ms is None:
            return False
        return self._context.clock.now_ms() - renewed_at_ms < self._ttl_ms // 2

    async def leases(self) -> list[TimerLease]:
        """Every job's lease as the database has it (for operators and tests)."""

        async def work(connection: AsyncConnection) -> list[TimerLease]:
            return await timer_lease_store.lease_rows(connection)

        return await self._context.run(work)

    async def release_all(self) -> None:
        """Give up every lease this worker holds (it is stopping): another worker
        takes the jobs at its next wake-up instead of after the time to live."""
        now_ms = self._context.clock.now_ms()
        jobs, self._held = sorted(self._held), {}

        async def work(connection: AsyncConnection) -> None:
            for job in jobs:
                await timer_lease_store.release(connection, job, holder=self.holder, now_ms=now_ms)

        if jobs:
            await self._context.run(work)
            log.info("worker %s released the timer leases %s", self.holder, ", ".join(jobs))

    async def _acquire(self, job: str) -> bool:
        now_ms = self._context.clock.now_ms()

        async def work(connection: AsyncConnection) -> bool:
            return await timer_lease_store.try_acquire(
                connection, job, holder=self.holder, now_ms=now_ms, ttl_ms=self._ttl_ms
            )

        held = await self._context.run(work)
        was_held = self._held.pop(job, None) is not None
        if held:
            self._held[job] = now_ms
            if not was_held:
                log.info("worker %s took the timer lease %s", self.holder, job)
        elif was_held:
            log.warning("worker %s lost the timer lease %s to another worker", self.holder, job)
        return held
