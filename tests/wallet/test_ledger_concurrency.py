"""Concurrent requests cannot lose or create money, on SQLite and PostgreSQL.

Each racer runs on its own database connection (and, where it matters, its
own engine, as two exchange workers would). One test fixes the interleaving
by holding one transaction open and proving that the other waits for it,
which is what ``BEGIN IMMEDIATE`` (SQLite) and ``FOR UPDATE`` row locks
(PostgreSQL) guarantee; the others let many tasks race freely and check that
exactly the affordable spends win, that a hold resolves once when a post and
a void race, and that a doubly-submitted id applies once. Every test ends
with ``check_invariants``.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.wallet.ledger_helpers import (
    ALICE,
    BOB,
    CAROL,
    ESCROW,
    balance_of,
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
    open_database,
)

R = TransferResult
F = TransferFlags


@pytest.fixture
async def second_ledger(database_url: str) -> AsyncIterator[SqlLedger]:
    """A ledger on its own engine: another worker process, as far as the database knows."""
    engine = open_database(database_url)
    try:
        yield SqlLedger(engine)
    finally:
        await engine.dispose()


async def test_two_concurrent_spends_that_together_overdraw_have_exactly_one_winner(
    ledger: SqlLedger, second_ledger: SqlLedger
) -> None:
    await open_accounts(ledger, ALICE, BOB, CAROL)
    await mint_into(ledger, ALICE, 1000, key="alice")
    outcomes = await asyncio.gather(
        ledger.create_transfers([payment("to-bob", ALICE, BOB, 700)]),
        second_ledger.create_transfers([payment("to-carol", ALICE, CAROL, 700)]),
    )
    results = sorted(outcome.result for [outcome] in outcomes)
    assert results == sorted([R.OK, R.EXCEEDS_CREDITS])
    alice = await balance_of(ledger, ALICE)
    assert (alice.debits_posted, alice.available) == (700, 300)
    await check_invariants(ledger.engine)


async def test_a_second_spender_waits_for_the_first_transaction_and_sees_its_spend(
    ledger: SqlLedger, second_ledger: SqlLedger, database_engine: AsyncEngine
) -> None:
    await open_accounts(ledger, ALICE, BOB, CAROL)
    await mint_into(ledger, ALICE, 1000, key="alice")
    async with database_engine.begin() as connection:
        [first] = await ledger.create_transfers(
            [payment("to-bob", ALICE, BOB, 700)], connection=connection
        )
        assert first.result is R.OK
        second = asyncio.create_task(
            second_ledger.create_transfers([payment("to-carol", ALICE, CAROL, 700)])
        )
        # While the first transaction is open, the second cannot even read the balance.
        done, _ = await asyncio.wait({second}, timeout=0.5)
        assert not done
    [outcome] = await second
    assert outcome.result is R.EXCEEDS_CREDITS
    assert (await balance_of(ledger, ALICE)).available == 300
    await check_invariants(ledger.engine)


async def test_twenty_concurrent_spends_never_overdraw(ledger: SqlLedger) -> None:
    await open_accounts(ledger, ALICE, BOB)
    await mint_into(ledger, ALICE, 1000, key="alice")
    batches = [[payment(f"spend-{index}", ALICE, BOB, 100)] for index in range(20)]
    outcomes = await asyncio.gather(*(ledger.create_transfers(batch) for batch in batches))
    results = Counter(outcome.result for [outcome] in outcomes)
    assert results == Counter({R.OK: 10, R.EXCEEDS_CREDITS: 10})
    alice = await balance_of(ledger, ALICE)
    assert (alice.available, alice.debits_posted) == (0, 1000)
    await check_invariants(ledger.engine)


async def test_crossing_payments_between_two_wallets_do_not_deadlock(
    ledger: SqlLedger, second_ledger: SqlLedger
) -> None:
    await open_accounts(ledger, ALICE, BOB)
    await mint_into(ledger, ALICE, 1000, key="alice")
    await mint_into(ledger, BOB, 1000, key="bob")
    requests = []
    for index in range(10):
        requests.append(ledger.create_transfers([payment(f"a-{index}", ALICE, BOB, 10)]))
        requests.append(second_ledger.create_transfers([payment(f"b-{index}", BOB, ALICE, 10)]))
    outcomes = await asyncio.gather(*requests)
    assert {outcome.result for [outcome] in outcomes} == {R.OK}
    assert (await balance_of(ledger, ALICE)).available == 1000
    await check_invariants(ledger.engine)


async def test_a_racing_post_and_void_resolve_a_hold_exactly_once(
    ledger: SqlLedger, second_ledger: SqlLedger
) -> None:
    await open_accounts(ledger, ALICE)
    await mint_into(ledger, ALICE, 1000, key="alice")
    held = payment("hold", ALICE, ESCROW, 600, flags=F.PENDING)
    assert (await ledger.create_transfers([held]))[0].result is R.OK
    post = payment("post", ALICE, ESCROW, 600, flags=F.POST_PENDING, pending_id="hold")
    void = payment("void", ALICE, ESCROW, 600, flags=F.VOID_PENDING, pending_id="hold")
    [[posted], [voided]] = await asyncio.gather(
        ledger.create_transfers([post]), second_ledger.create_transfers([void])
    )
    assert sorted([posted.result, voided.result]) in (
        sorted([R.OK, R.PENDING_TRANSFER_ALREADY_POSTED]),
        sorted([R.OK, R.PENDING_TRANSFER_ALREADY_VOIDED]),
    )
    alice = await balance_of(ledger, ALICE)
    assert alice.held == 0
    assert alice.available == (400 if posted.result is R.OK else 1000)
    await check_invariants(ledger.engine)


async def test_the_same_transfer_submitted_concurrently_applies_once(
    ledger: SqlLedger, second_ledger: SqlLedger
) -> None:
    await open_accounts(ledger, ALICE, BOB)
    await mint_into(ledger, ALICE, 1000, key="alice")
    same = payment("once", ALICE, BOB, 100)
    outcomes = await asyncio.gather(
        *((ledger if index % 2 else second_ledger).create_transfers([same]) for index in range(6))
    )
    assert {outcome.result for [outcome] in outcomes} == {R.OK}
    assert sum(not outcome.replayed for [outcome] in outcomes) == 1
    assert (await balance_of(ledger, BOB)).available == 100
    await check_invariants(ledger.engine)


async def test_the_same_failing_transfer_submitted_concurrently_is_stored_once(
    ledger: SqlLedger, second_ledger: SqlLedger
) -> None:
    # No row lock guards accounts that do not exist, so on PostgreSQL the
    # racers meet at the insert of the stored failure; the losers retry.
    missing = payment("between-nobodies", "agent:nobody", "agent:no-one", 1)
    outcomes = await asyncio.gather(
        *(
            (ledger if index % 2 else second_ledger).create_transfers([missing])
            for index in range(6)
        )
    )
    assert {outcome.result for [outcome] in outcomes} == {R.DEBIT_ACCOUNT_NOT_FOUND}
    assert sum(not outcome.replayed for [outcome] in outcomes) == 1
    await check_invariants(ledger.engine)


async def test_the_same_account_created_concurrently_exists_once(
    ledger: SqlLedger, second_ledger: SqlLedger
) -> None:
    outcomes = await asyncio.gather(
        *(
            (ledger if index % 2 else second_ledger).create_accounts([wallet_account(ALICE)])
            for index in range(6)
        )
    )
    assert {outcome.result for [outcome] in outcomes} == {AccountResult.OK}
    assert set(await ledger.lookup_accounts([ALICE])) == {ALICE}
    await check_invariants(ledger.engine)
