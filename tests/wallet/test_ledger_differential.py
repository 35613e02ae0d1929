"""The SQL ledger decides exactly like the pure core, over random batches.

Hypothesis draws the same kind of scenarios as the core's property tests
(payments, holds with short timeouts, posts and voids, linked chains, exact
retries, invalid transfers, clock jumps). Each scenario runs through
``MemoryLedger`` (the planner over plain dicts) and through ``SqlLedger`` on a
fresh database (SQLite, and PostgreSQL when configured) on the same clock.
Every outcome (result and ``replayed``) must agree, the balances readers see
must agree, and the stored ledger must pass ``check_invariants``.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.wallet.ledger_helpers import FreshDatabase, ManualClock
from tests.wallet.memory_ledger import STANDARD_ACCOUNTS, START_US, MemoryLedger
from tests.wallet.test_core_properties import mints, scenarios
from wallet import NewTransfer, SqlLedger, check_invariants, open_database
from wallet.core import release_expired

_OFF_THE_SECOND_US = 1000


async def run_both(url: str, batches: list[list[NewTransfer]], clock_steps_s: list[int]) -> None:
    memory = MemoryLedger()
    clock = ManualClock()
    clock.now_us = START_US
    engine = open_database(url)
    try:
        ledger = SqlLedger(engine, clock_us=clock)
        await ledger.create_accounts(list(STANDARD_ACCOUNTS))
        for batch, step_s in zip(batches, clock_steps_s, strict=False):
            expected = [(o.id, o.result, o.replayed) for o in memory.submit(batch).outcomes]
            actual = [(o.id, o.result, o.replayed) for o in await ledger.create_transfers(batch)]
            assert actual == expected
            # A hold's deadline counts from its own timestamp, which sits a few
            # microseconds after the batch's clock reading, by how many records
            # came before it. The two ledgers write different numbers of expiry
            # records (the core sees every hold, SQL only the touched ones), so
            # the clock steps off whole seconds to keep clear of deadlines.
            memory.now_us += step_s * 1_000_000 + (_OFF_THE_SECOND_US if step_s else 0)
            clock.now_us = memory.now_us
        seen = release_expired(memory.accounts, list(memory.holds.values()), now_us=memory.now_us)
        assert await ledger.lookup_accounts(list(seen)) == seen
        await check_invariants(engine)
    finally:
        await engine.dispose()


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    batches=scenarios(),
    clock_steps_s=st.lists(st.integers(0, 4), min_size=7, max_size=7),
    minted=st.integers(0, 1500),
)
async def test_the_sql_ledger_decides_every_transfer_like_the_pure_core(
    fresh_database: FreshDatabase,
    batches: list[list[NewTransfer]],
    clock_steps_s: list[int],
    minted: int,
) -> None:
    async with fresh_database() as url:
        await run_both(url, [mints(minted) if minted else [], *batches], clock_steps_s)
