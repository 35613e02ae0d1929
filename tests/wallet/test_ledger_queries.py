"""The ledger's queries find exactly what they must, however long the id lists.

Id lists are bound as one parameter (a PostgreSQL array, a JSON array for
SQLite), so these tests check what that could get wrong: ids with quotes,
backslashes, commas, brackets and non-ASCII letters round-trip exactly;
lists far longer than the drivers' parameter caps work; an empty list finds
nothing. The lookup of expired holds must start from the partial index of
open holds, not from the accounts' history: on SQLite the query plan is
checked, and on both databases the lookup still finds a hold past its
deadline among much history. When no open hold is past its deadline, a probe
of that index is the only statement. Every test ends with ``check_invariants``.
"""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.wallet.ledger_helpers import (
    ISSUANCE,
    ManualClock,
    mint_into,
    open_accounts,
    payment,
    wallet_account,
)
from wallet import (
    AccountResult,
    SqlLedger,
    TransferFlags,
    TransferResult,
    check_invariants,
    queries,
)
from wallet.limits import ACCOUNT_LOOKUP_SIZE_MAX

ODD_IDS = [
    'agent:"quoted"',
    "agent:back\\slash",
    "agent:comma,separated",
    "agent:[bracketed]",
    "agent:{braced}",
    "agent:naïve-ünïcödé-日本",
    "agent:'single'",
    "agent: spaced ",
]


async def test_ids_with_quotes_backslashes_and_non_ascii_round_trip_exactly(
    ledger: SqlLedger,
) -> None:
    await open_accounts(ledger)
    outcomes = await ledger.create_accounts([wallet_account(i) for i in ODD_IDS])
    assert {outcome.result for outcome in outcomes} == {AccountResult.OK}
    for index, account_id in enumerate(ODD_IDS):
        await mint_into(ledger, account_id, 100 + index, key=account_id)
    transfer = payment('pay:"odd"\\,[1]', ODD_IDS[0], ODD_IDS[5], 50)
    [outcome] = await ledger.create_transfers([transfer])
    assert outcome.result is TransferResult.OK
    [again] = await ledger.create_transfers([transfer])
    assert (again.result, again.replayed) == (TransferResult.OK, True)
    balances = await ledger.lookup_accounts([*ODD_IDS, "agent:quoted", "agent:naive"])
    assert set(balances) == set(ODD_IDS)
    assert balances[ODD_IDS[0]].available == 100 - 50
    assert balances[ODD_IDS[5]].available == 105 + 50
    await check_invariants(ledger.engine)


async def test_a_lookup_of_the_longest_allowed_id_list_finds_exactly_the_accounts_that_exist(
    ledger: SqlLedger,
) -> None:
    existing = [f"agent:{index:05}" for index in range(0, ACCOUNT_LOOKUP_SIZE_MAX, 7)]
    outcomes = await ledger.create_accounts([wallet_account(i) for i in existing])
    assert {outcome.result for outcome in outcomes} == {AccountResult.OK}
    wanted = [f"agent:{index:05}" for index in range(ACCOUNT_LOOKUP_SIZE_MAX)]
    # Longer than SQLite's and asyncpg's caps on bound parameters (32,766) in
    # total over the lookup's queries, and one list is half of that.
    assert len(wanted) == ACCOUNT_LOOKUP_SIZE_MAX
    balances = await ledger.lookup_accounts(wanted)
    assert sorted(balances) == existing
    assert await ledger.lookup_accounts([]) == {}
    await check_invariants(ledger.engine)


async def test_an_expired_hold_is_found_among_much_history_and_released(
    database_engine: AsyncEngine,
) -> None:
    clock = ManualClock()
    ledger = SqlLedger(database_engine, clock_us=clock)
    await open_accounts(ledger, "agent:a", "agent:b")
    await mint_into(ledger, "agent:a", 10_000, key="a")
    history = [payment(f"h-{i}", "agent:a", "agent:b", 1) for i in range(3000)]
    assert {o.result for o in await ledger.create_transfers(history)} == {TransferResult.OK}
    hold = payment("hold", "agent:a", "agent:b", 5000, flags=TransferFlags.PENDING, timeout_s=5)
    [held] = await ledger.create_transfers([hold])
    assert held.result is TransferResult.OK
    clock.advance(6)
    async with database_engine.connect() as connection:
        expired = await queries.select_expired_holds(
            connection, now_us=clock(), account_ids=["agent:a", ISSUANCE]
        )
    assert [h.id for h in expired] == ["hold"]
    # Spending what the hold held works: it counts as released.
    [spent] = await ledger.create_transfers([payment("spend", "agent:a", "agent:b", 6000)])
    assert spent.result is TransferResult.OK
    await check_invariants(database_engine)


# PostgreSQL plans by statistics (the CTE is materialized there too), so the
# plan is pinned on SQLite only.
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_the_expired_hold_lookup_starts_from_the_open_holds_index_on_sqlite(
    database_engine: AsyncEngine,
) -> None:
    assert database_engine.dialect.name == "sqlite"
    clock = await _one_open_hold(database_engine)
    clock.advance(6)
    expired, executed = await _expired_lookup(database_engine, now_us=clock())
    assert [h.id for h in expired] == ["hold"]
    # First a probe: is any open hold past its deadline at all?
    [probe, lookup] = [(sql, values) for sql, values in executed if "SELECT" in sql]
    probe_plan = await _query_plan(database_engine, *probe)
    assert probe_plan == [
        "SEARCH ledger_pending_transfers USING INDEX "
        "ledger_pending_transfers_open_by_deadline (expires_at_us<?)"
    ]
    plan = await _query_plan(database_engine, *lookup)
    # Then the open holds past their deadline come first, from their index...
    assert "MATERIALIZE" in plan[0], plan
    assert "ledger_pending_transfers_open_by_deadline" in plan[1], plan
    # ... and no account's history is read by its debit or credit index.
    assert not [step for step in plan if "_by_debit_account" in step], plan
    assert not [step for step in plan if "_by_credit_account" in step], plan
    await check_invariants(database_engine)


async def test_without_expired_holds_the_lookup_stops_after_the_probe(
    database_engine: AsyncEngine,
) -> None:
    clock = await _one_open_hold(database_engine)
    expired, executed = await _expired_lookup(database_engine, now_us=clock())
    assert expired == []
    [probe] = [sql for sql, _ in executed if "SELECT" in sql]
    assert "LIMIT" in probe and "json_each" not in probe and "unnest" not in probe
    await check_invariants(database_engine)


async def _expired_lookup(
    engine: AsyncEngine, /, *, now_us: int
) -> tuple[list[Any], list[tuple[str, Any]]]:
    """The expired holds on agent:a and agent:b, and the statements (with values) it ran."""
    executed: list[tuple[str, Any]] = []

    def capture(*arguments: Any) -> None:
        _connection, _cursor, statement, parameters, _context, _many = arguments
        executed.append((statement, parameters))

    event.listen(engine.sync_engine, "before_cursor_execute", capture)
    try:
        async with engine.connect() as connection:
            expired = await queries.select_expired_holds(
                connection, now_us=now_us, account_ids=["agent:a", "agent:b"]
            )
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", capture)
    return expired, executed


async def _one_open_hold(engine: AsyncEngine, /) -> ManualClock:
    """A ledger with one 5-second hold on agent:a; its clock."""
    clock = ManualClock()
    ledger = SqlLedger(engine, clock_us=clock)
    await open_accounts(ledger, "agent:a", "agent:b")
    await mint_into(ledger, "agent:a", 100, key="a")
    hold = payment("hold", "agent:a", "agent:b", 50, flags=TransferFlags.PENDING, timeout_s=5)
    assert [o.result for o in await ledger.create_transfers([hold])] == [TransferResult.OK]
    return clock


async def _query_plan(engine: AsyncEngine, statement: str, parameters: Any) -> list[str]:
    async with engine.connect() as connection:
        rows = await connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", parameters)
        return [str(row[3]) for row in rows]
