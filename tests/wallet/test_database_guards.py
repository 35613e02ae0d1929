"""The database itself refuses what the ledger must never do, bypassing the ledger.

Raw SQL, as a buggy or malicious writer would send it: updating, deleting
(and, on PostgreSQL, truncating) transfers is stopped by triggers; an
overdrawn wallet, a negative total or a non-positive amount by CHECK
constraints; a second resolution of one pending transfer by a unique index.
Each refusal surfaces as ``LedgerRejected`` through the wallet's error
translation, and the ledger is still consistent afterwards.
"""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.wallet.ledger_helpers import (
    ALICE,
    BOB,
    ESCROW,
    balance_of,
    mint_into,
    open_accounts,
    payment,
)
from wallet import (
    LedgerConflict,
    LedgerRejected,
    SqlLedger,
    TransferFlags,
    TransferResult,
    check_invariants,
)
from wallet.database import translated_errors


@pytest.fixture
async def funded(ledger: SqlLedger) -> SqlLedger:
    await open_accounts(ledger, ALICE, BOB)
    await mint_into(ledger, ALICE, 1000, key="alice")
    return ledger


async def execute_raw(engine: AsyncEngine, statement: str, **parameters: object) -> None:
    with translated_errors():
        async with engine.begin() as connection:
            await connection.execute(text(statement), parameters)


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE ledger_transfers SET amount = amount + 1",
        "UPDATE ledger_transfers SET credit_account_id = 'agent:bob'",
        "DELETE FROM ledger_transfers",
    ],
)
async def test_transfers_cannot_be_updated_or_deleted(funded: SqlLedger, statement: str) -> None:
    with pytest.raises(LedgerRejected) as raised:
        await execute_raw(funded.engine, statement)
    assert "append-only" in raised.value.reason
    history = await funded.account_transfers(ALICE)
    assert [(r.id, r.amount, r.credit_account_id) for r in history] == [("mint:alice", 1000, ALICE)]
    await check_invariants(funded.engine)


# SQLite has no TRUNCATE, so this runs on PostgreSQL only.
@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
async def test_transfers_cannot_be_truncated_on_postgresql(funded: SqlLedger) -> None:
    assert funded.engine.dialect.name == "postgresql"
    with pytest.raises(LedgerRejected):
        await execute_raw(funded.engine, "TRUNCATE ledger_transfers CASCADE")
    await check_invariants(funded.engine)


async def test_an_overdraw_written_directly_is_refused_by_a_check_constraint(
    funded: SqlLedger,
) -> None:
    with pytest.raises(LedgerRejected):
        await execute_raw(
            funded.engine,
            "UPDATE ledger_accounts SET debits_posted = credits_posted + 1 WHERE id = :id",
            id=ALICE,
        )
    with pytest.raises(LedgerRejected):
        await execute_raw(
            funded.engine,
            "UPDATE ledger_accounts SET debits_pending = 1001 WHERE id = :id",
            id=ALICE,
        )
    assert (await balance_of(funded, ALICE)).available == 1000
    await check_invariants(funded.engine)


async def test_a_negative_total_is_refused_by_a_check_constraint(funded: SqlLedger) -> None:
    with pytest.raises(LedgerRejected):
        await execute_raw(
            funded.engine, "UPDATE ledger_accounts SET credits_pending = -1 WHERE id = :id", id=BOB
        )
    await check_invariants(funded.engine)


@pytest.mark.parametrize("amount", [0, -5])
async def test_a_transfer_with_a_non_positive_amount_is_refused_by_a_check_constraint(
    funded: SqlLedger, amount: int
) -> None:
    with pytest.raises(LedgerRejected):
        await execute_raw(
            funded.engine,
            "INSERT INTO ledger_transfers (id, debit_account_id, credit_account_id, amount,"
            " ledger, code, flags, pending_id, timeout_s, user_data, timestamp_us)"
            " VALUES ('raw', :debit, :credit, :amount, 1, 7, 0, NULL, 0, '', 1)",
            debit=ALICE,
            credit=BOB,
            amount=amount,
        )
    await check_invariants(funded.engine)


async def test_a_second_resolution_of_one_pending_transfer_is_refused_by_a_unique_index(
    funded: SqlLedger,
) -> None:
    held = payment("hold", ALICE, ESCROW, 100, flags=TransferFlags.PENDING)
    post = payment("post", ALICE, ESCROW, 100, flags=TransferFlags.POST_PENDING, pending_id="hold")
    outcomes = await funded.create_transfers([held, post])
    assert [o.result for o in outcomes] == [TransferResult.OK, TransferResult.OK]
    # PostgreSQL reports a unique violation as a lost race (retrying is safe:
    # the retry sees the hold resolved); SQLite cannot race, so it is a refusal.
    with pytest.raises((LedgerRejected, LedgerConflict)) as raised:
        await execute_raw(
            funded.engine,
            "INSERT INTO ledger_transfers (id, debit_account_id, credit_account_id, amount,"
            " ledger, code, flags, pending_id, timeout_s, user_data, timestamp_us)"
            " VALUES ('second-void', :debit, :credit, 100, 1, 4, 8, 'hold', 0, '', 1)",
            debit=ALICE,
            credit=ESCROW,
        )
    assert "pending_id" in str(raised.value)
    await check_invariants(funded.engine)
