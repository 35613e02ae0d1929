"""``check_invariants`` passes on an honest ledger and names every tampering.

A ledger that went through mints, payments, stored failures, posted, voided
and expired holds passes. Then raw SQL breaks one thing at a time (an account
total, a pending status, a missing status row) and the check must raise
``InvariantViolation`` naming the account or transfer involved.
"""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.wallet.ledger_helpers import (
    ALICE,
    BOB,
    ESCROW,
    ManualClock,
    mint_into,
    open_accounts,
    payment,
)
from wallet import (
    InvariantViolation,
    LedgerId,
    LedgerTotals,
    SqlLedger,
    TransferFlags,
    TransferResult,
    check_invariants,
    ledger_totals,
)

F = TransferFlags


@pytest.fixture
async def busy(database_engine: AsyncEngine) -> SqlLedger:
    """A ledger with every kind of transfer in it, one hold still pending."""
    clock = ManualClock()
    ledger = SqlLedger(database_engine, clock_us=clock)
    await open_accounts(ledger, ALICE, BOB)
    await mint_into(ledger, ALICE, 1000, key="alice")
    outcomes = await ledger.create_transfers(
        [
            payment("pay", ALICE, BOB, 100),
            payment("too-much", ALICE, BOB, 5000),
            payment("hold-post", ALICE, ESCROW, 200, flags=F.PENDING),
            payment("hold-void", ALICE, ESCROW, 50, flags=F.PENDING),
            payment("hold-expire", ALICE, ESCROW, 70, flags=F.PENDING, timeout_s=5),
            payment("hold-open", ALICE, ESCROW, 30, flags=F.PENDING),
            payment("post", ALICE, ESCROW, 150, flags=F.POST_PENDING, pending_id="hold-post"),
            payment("void", ALICE, ESCROW, 50, flags=F.VOID_PENDING, pending_id="hold-void"),
        ]
    )
    assert [o.result for o in outcomes].count(TransferResult.OK) == 7
    clock.advance(6)
    assert await ledger.expire_pending() == 1
    return ledger


async def test_an_honest_ledger_passes_and_its_totals_balance(busy: SqlLedger) -> None:
    await check_invariants(busy.engine)
    totals = await ledger_totals(busy.engine)
    assert totals == {
        LedgerId.CREDITS: LedgerTotals(
            debits_pending=30, debits_posted=1250, credits_pending=30, credits_posted=1250
        )
    }


async def test_the_check_runs_inside_a_callers_transaction_and_sees_its_writes(
    busy: SqlLedger,
) -> None:
    async with busy.engine.begin() as connection:
        await busy.create_transfers([payment("more", ALICE, BOB, 1)], connection=connection)
        await check_invariants(connection)
        totals = await ledger_totals(connection)
        assert totals[LedgerId.CREDITS].debits_posted == 1251


async def test_an_account_total_changed_behind_the_ledgers_back_is_named(
    busy: SqlLedger,
) -> None:
    async with busy.engine.begin() as connection:
        await connection.execute(
            text("UPDATE ledger_accounts SET credits_posted = credits_posted + 5 WHERE id = :id"),
            {"id": BOB},
        )
    with pytest.raises(InvariantViolation) as raised:
        await check_invariants(busy.engine)
    violations = raised.value.violations
    assert any("debits_posted" in v and "credits_posted" in v for v in violations)
    assert any(BOB in v and "credits_posted is 105" in v for v in violations)


async def test_a_pending_status_that_disagrees_with_the_transfers_is_named(
    busy: SqlLedger,
) -> None:
    async with busy.engine.begin() as connection:
        await connection.execute(
            text("UPDATE ledger_pending_transfers SET status = 'posted' WHERE id = 'hold-open'")
        )
    with pytest.raises(InvariantViolation) as raised:
        await check_invariants(busy.engine)
    assert any("'hold-open'" in v and "'pending'" in v for v in raised.value.violations)


async def test_a_missing_pending_status_row_is_named(busy: SqlLedger) -> None:
    async with busy.engine.begin() as connection:
        await connection.execute(
            text("DELETE FROM ledger_pending_transfers WHERE id = 'hold-expire'")
        )
    with pytest.raises(InvariantViolation) as raised:
        await check_invariants(busy.engine)
    assert raised.value.violations == ("pending transfer 'hold-expire' has no status row",)


async def test_a_stored_failure_for_an_applied_id_is_named(busy: SqlLedger) -> None:
    async with busy.engine.begin() as connection:
        await connection.execute(
            text(
                "INSERT INTO ledger_failed_transfers (id, fingerprint, result, timestamp_us)"
                " VALUES ('pay', 'x', 'exceeds_credits', 1)"
            )
        )
    with pytest.raises(InvariantViolation) as raised:
        await check_invariants(busy.engine)
    assert raised.value.violations == ("id 'pay' is both applied and stored as failed",)
