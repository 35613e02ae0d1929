"""Batched, concurrent calls decide exactly like the pure core deciding them one by one.

Hypothesis draws rounds of batches of the core's property-test kind
(payments, holds with short timeouts, posts and voids of earlier holds,
linked chains and chains left open, exact retries, ids reused across
batches, invalid transfers), with clock steps between rounds. Each round's
batches are submitted at once by concurrent callers through a
``BatchingLedger`` with small groups, so the writer cuts them into several
groups of several callers each; the same batches go one by one, in the order
the callers queued them, through ``MemoryLedger`` (the planner over plain
dicts). Every caller's outcomes (result and ``replayed``) must equal the
core's, the balances readers see must agree, and the stored ledger must pass
``check_invariants``. Runs on SQLite, and PostgreSQL when configured.
"""

from __future__ import annotations

import asyncio

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.wallet.batching_helpers import RecordingLedger
from tests.wallet.ledger_helpers import FreshDatabase, ManualClock
from tests.wallet.memory_ledger import STANDARD_ACCOUNTS, START_US, MemoryLedger
from tests.wallet.test_core_properties import mints, scenarios
from wallet import BatchingLedger, NewTransfer, check_invariants, open_database
from wallet.core import release_expired

# Small groups: a round of up to six batches of up to ten transfers spans
# several groups, and a batch larger than a group forms a group alone.
GROUP_SIZE_MAX = 8
# As in test_ledger_differential: clock steps keep clear of hold deadlines,
# which sit a few microseconds after the clock reading that created them.
_OFF_THE_SECOND_US = 1000


async def run_both(url: str, rounds: list[list[list[NewTransfer]]], steps_s: list[int]) -> int:
    """Play ``rounds`` through both ledgers; returns how many groups held
    more than one caller."""
    memory = MemoryLedger()
    clock = ManualClock()
    clock.now_us = START_US
    engine = open_database(url)
    try:
        recording = RecordingLedger(engine, clock_us=clock)
        await recording.create_accounts(list(STANDARD_ACCOUNTS))
        async with BatchingLedger(recording, group_size_max=GROUP_SIZE_MAX) as batching:
            for batches, step_s in zip(rounds, steps_s, strict=False):
                answered = await asyncio.gather(*(batching.create_transfers(b) for b in batches))
                for batch, outcomes in zip(batches, answered, strict=True):
                    expected = [(o.id, o.result, o.replayed) for o in memory.submit(batch).outcomes]
                    assert [(o.id, o.result, o.replayed) for o in outcomes] == expected
                memory.now_us += step_s * 1_000_000 + (_OFF_THE_SECOND_US if step_s else 0)
                clock.now_us = memory.now_us
        seen = release_expired(memory.accounts, list(memory.holds.values()), now_us=memory.now_us)
        assert await recording.lookup_accounts(list(seen)) == seen
        await check_invariants(engine)
        return sum(1 for group in recording.groups if len(group) > 1)
    finally:
        await engine.dispose()


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    rounds=st.lists(scenarios(), min_size=1, max_size=3),
    steps_s=st.lists(st.integers(0, 4), min_size=3, max_size=3),
    minted=st.integers(0, 1500),
)
async def test_concurrent_batched_callers_get_the_outcomes_the_core_gives_one_by_one(
    fresh_database: FreshDatabase,
    rounds: list[list[list[NewTransfer]]],
    steps_s: list[int],
    minted: int,
) -> None:
    async with fresh_database() as url:
        funding = [[mints(minted)]] if minted else []
        await run_both(url, [*funding, *rounds], [0, *steps_s] if minted else steps_s)


async def test_the_rounds_do_share_groups_between_callers(fresh_database: FreshDatabase) -> None:
    """Guards the property above against passing vacuously (one caller per group)."""
    rounds = [[mints(1000)], [[t] for t in mints(1000)] * 2]
    async with fresh_database() as url:
        assert await run_both(url, rounds, [0, 0]) >= 1
