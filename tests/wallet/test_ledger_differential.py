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

import os
import shutil
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from tests.fixtures_database import POSTGRES_URL_VARIABLE
from tests.wallet.ledger_helpers import ManualClock
from tests.wallet.memory_ledger import STANDARD_ACCOUNTS, START_US, MemoryLedger
from tests.wallet.test_core_properties import mints, scenarios
from wallet import NewTransfer, SqlLedger, check_invariants, open_database, upgrade_schema
from wallet.core import release_expired
from wallet.database import async_database_url

FreshDatabase = Callable[[], AbstractAsyncContextManager[str]]
_OFF_THE_SECOND_US = 1000


async def _admin(admin_url: str, statement: str) -> None:
    engine = create_async_engine(admin_url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    try:
        async with engine.connect() as connection:
            await connection.execute(text(statement))
    finally:
        await engine.dispose()


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
async def fresh_database(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[FreshDatabase]:
    """Fresh migrated databases, cheaply: copies of one migrated template."""
    if request.param == "sqlite":
        folder = tmp_path_factory.mktemp("differential")
        template = folder / "template.sqlite3"
        await upgrade_schema(f"sqlite:///{template}")

        @asynccontextmanager
        async def fresh_sqlite() -> AsyncIterator[str]:
            path = folder / f"{uuid.uuid4().hex}.sqlite3"
            shutil.copyfile(template, path)
            yield f"sqlite:///{path}"

        yield fresh_sqlite
        return
    configured = os.environ.get(POSTGRES_URL_VARIABLE)
    if not configured:
        pytest.skip(f"{POSTGRES_URL_VARIABLE} not set")
    admin_url = async_database_url(configured)
    template_name = f"agentx_template_{uuid.uuid4().hex[:12]}"

    def url_of(name: str) -> str:
        return make_url(admin_url).set(database=name).render_as_string(hide_password=False)

    await _admin(admin_url, f'CREATE DATABASE "{template_name}"')
    await upgrade_schema(url_of(template_name))

    @asynccontextmanager
    async def fresh_postgres() -> AsyncIterator[str]:
        name = f"agentx_test_{uuid.uuid4().hex[:16]}"
        await _admin(admin_url, f'CREATE DATABASE "{name}" TEMPLATE "{template_name}"')
        try:
            yield url_of(name)
        finally:
            await _admin(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    try:
        yield fresh_postgres
    finally:
        await _admin(admin_url, f'DROP DATABASE IF EXISTS "{template_name}" WITH (FORCE)')


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
