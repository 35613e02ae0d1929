"""Escrow holds (pending transfers) through the SQL ledger, on SQLite and PostgreSQL.

A hold is posted in full or in part (the rest released) or voided, exactly
once. A hold past its deadline can no longer be posted or voided, counts as
released for readers and spenders before any sweeper runs, and the sweeper
writes one ``EXPIRY`` void per expired hold. Time is moved with a manual
clock. Every test ends with ``check_invariants``.
"""

from __future__ import annotations

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.wallet.ledger_helpers import (
    ALICE,
    BOB,
    CAROL,
    ESCROW,
    ManualClock,
    balance_of,
    mint_into,
    open_accounts,
    payment,
)
from wallet import (
    NewTransfer,
    PendingStatus,
    SqlLedger,
    TransferCode,
    TransferFlags,
    TransferResult,
    ValueOutOfRange,
    check_invariants,
)
from wallet.validation import expiry_transfer_id

R = TransferResult
F = TransferFlags


def hold(transfer_id: str, amount: int, /, *, timeout_s: int = 0) -> NewTransfer:
    return payment(
        transfer_id,
        ALICE,
        ESCROW,
        amount,
        flags=F.PENDING,
        timeout_s=timeout_s,
        code=TransferCode.ESCROW_LOCK,
    )


def post(
    transfer_id: str, pending_id: str, amount: int, /, *, flags: TransferFlags = F.NONE
) -> NewTransfer:
    return payment(
        transfer_id,
        ALICE,
        ESCROW,
        amount,
        flags=F.POST_PENDING | flags,
        pending_id=pending_id,
        code=TransferCode.ESCROW_RELEASE,
    )


def void(transfer_id: str, pending_id: str, amount: int, /) -> NewTransfer:
    return payment(
        transfer_id,
        ALICE,
        ESCROW,
        amount,
        flags=F.VOID_PENDING,
        pending_id=pending_id,
        code=TransferCode.ESCROW_REFUND,
    )


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def funded(database_engine: AsyncEngine, clock: ManualClock) -> SqlLedger:
    """A ledger on a manual clock; Alice holds 1,000."""
    ledger = SqlLedger(database_engine, clock_us=clock)
    await open_accounts(ledger, ALICE, BOB, CAROL)
    await mint_into(ledger, ALICE, 1000, key="alice")
    return ledger


async def test_a_hold_moves_funds_to_pending_and_a_full_post_moves_them_to_posted(
    funded: SqlLedger,
) -> None:
    [held] = await funded.create_transfers([hold("hold", 600)])
    assert held.result is R.OK
    alice, escrow = await balance_of(funded, ALICE), await balance_of(funded, ESCROW)
    assert (alice.held, alice.available, escrow.credits_pending) == (600, 400, 600)
    [posted] = await funded.create_transfers([post("post", "hold", 600)])
    assert posted.result is R.OK
    alice, escrow = await balance_of(funded, ALICE), await balance_of(funded, ESCROW)
    assert (alice.held, alice.debits_posted, alice.available) == (0, 600, 400)
    assert (escrow.credits_pending, escrow.credits_posted) == (0, 600)
    await check_invariants(funded.engine)


async def test_a_partial_post_posts_that_part_and_releases_the_rest(funded: SqlLedger) -> None:
    await funded.create_transfers([hold("hold", 600)])
    [posted] = await funded.create_transfers([post("post", "hold", 250)])
    assert posted.result is R.OK
    alice, escrow = await balance_of(funded, ALICE), await balance_of(funded, ESCROW)
    assert (alice.held, alice.available, escrow.available) == (0, 750, 250)
    await check_invariants(funded.engine)


async def test_a_void_releases_the_hold(funded: SqlLedger) -> None:
    await funded.create_transfers([hold("hold", 600)])
    [voided] = await funded.create_transfers([void("void", "hold", 600)])
    assert voided.result is R.OK
    alice, escrow = await balance_of(funded, ALICE), await balance_of(funded, ESCROW)
    assert (alice.held, alice.available, escrow.credits_pending, escrow.available) == (
        0,
        1000,
        0,
        0,
    )
    await check_invariants(funded.engine)


async def test_a_hold_resolves_exactly_once(funded: SqlLedger) -> None:
    await funded.create_transfers([hold("hold", 600)])
    await funded.create_transfers([post("post", "hold", 600)])
    outcomes = await funded.create_transfers(
        [post("post-twice", "hold", 600), void("void-after-post", "hold", 600)]
    )
    assert [o.result for o in outcomes] == [R.PENDING_TRANSFER_ALREADY_POSTED] * 2
    await funded.create_transfers([hold("hold-2", 100)])
    await funded.create_transfers([void("void-2", "hold-2", 100)])
    outcomes = await funded.create_transfers(
        [void("void-twice", "hold-2", 100), post("post-after-void", "hold-2", 100)]
    )
    assert [o.result for o in outcomes] == [R.PENDING_TRANSFER_ALREADY_VOIDED] * 2
    # Retrying the winning post is a replay, not a second post.
    [replayed] = await funded.create_transfers([post("post", "hold", 600)])
    assert (replayed.result, replayed.replayed) == (R.OK, True)
    assert (await balance_of(funded, ALICE)).available == 400
    await check_invariants(funded.engine)


async def test_posting_more_than_held_or_voiding_a_different_amount_is_refused(
    funded: SqlLedger,
) -> None:
    await funded.create_transfers([hold("hold", 600)])
    outcomes = await funded.create_transfers(
        [post("too-much", "hold", 601), void("wrong-amount", "hold", 599)]
    )
    assert [o.result for o in outcomes] == [
        R.PENDING_AMOUNT_EXCEEDED,
        R.PENDING_TRANSFER_HAS_DIFFERENT_AMOUNT,
    ]
    assert (await balance_of(funded, ALICE)).held == 600
    await check_invariants(funded.engine)


async def test_posting_an_unknown_or_non_pending_transfer_is_refused(funded: SqlLedger) -> None:
    outcomes = await funded.create_transfers(
        [post("post-nothing", "nothing", 10), post("post-mint", "mint:alice", 10)]
    )
    assert [o.result for o in outcomes] == [
        R.PENDING_TRANSFER_NOT_FOUND,
        R.PENDING_TRANSFER_NOT_PENDING,
    ]
    await check_invariants(funded.engine)


async def test_a_hold_past_its_deadline_cannot_be_posted_or_voided(
    funded: SqlLedger, clock: ManualClock
) -> None:
    await funded.create_transfers([hold("hold", 600, timeout_s=30)])
    clock.advance(31)
    outcomes = await funded.create_transfers([post("late-post", "hold", 600)])
    assert [o.result for o in outcomes] == [R.PENDING_TRANSFER_EXPIRED]
    outcomes = await funded.create_transfers([void("late-void", "hold", 600)])
    assert [o.result for o in outcomes] == [R.PENDING_TRANSFER_EXPIRED]
    await check_invariants(funded.engine)


async def test_an_expired_hold_counts_as_released_before_the_sweeper_runs(
    funded: SqlLedger, clock: ManualClock
) -> None:
    await funded.create_transfers([hold("hold", 600, timeout_s=30)])
    assert (await balance_of(funded, ALICE)).available == 400
    clock.advance(31)
    # Readers see it released although nothing has been written yet ...
    alice, escrow = await balance_of(funded, ALICE), await balance_of(funded, ESCROW)
    assert (alice.held, alice.available, escrow.credits_pending) == (0, 1000, 0)
    history = await funded.account_transfers(ALICE)
    assert TransferCode.EXPIRY not in {record.code for record in history}
    # ... and a spend may use the released funds: the batch voids the hold first.
    [spent] = await funded.create_transfers([payment("spend", ALICE, BOB, 1000)])
    assert spent.result is R.OK
    history = await funded.account_transfers(ALICE)
    assert [record.id for record in history[:2]] == ["spend", expiry_transfer_id("hold")]
    assert await funded.expire_pending() == 0
    await check_invariants(funded.engine)


async def test_the_sweeper_writes_one_expiry_void_per_expired_hold(
    funded: SqlLedger, clock: ManualClock
) -> None:
    await funded.create_transfers(
        [
            hold("short-1", 100, timeout_s=10),
            hold("short-2", 200, timeout_s=10),
            hold("long", 300, timeout_s=3600),
            hold("forever", 50),
        ]
    )
    assert await funded.expire_pending() == 0
    clock.advance(11)
    assert await funded.expire_pending(limit=1) == 1
    assert await funded.expire_pending() == 1
    assert await funded.expire_pending() == 0
    expiries = [r for r in await funded.account_transfers(ESCROW) if r.code is TransferCode.EXPIRY]
    assert sorted((r.pending_id, r.amount, r.flags) for r in expiries) == [
        ("short-1", 100, F.VOID_PENDING),
        ("short-2", 200, F.VOID_PENDING),
    ]
    assert (await balance_of(funded, ALICE)).held == 350
    # Sweeping as of a later time catches the long hold too.
    assert await funded.expire_pending(now_us=clock.now_us + 3600 * 1_000_000) == 1
    assert (await balance_of(funded, ALICE)).held == 50
    await check_invariants(funded.engine)


async def test_a_post_within_the_deadline_succeeds(funded: SqlLedger, clock: ManualClock) -> None:
    await funded.create_transfers([hold("hold", 600, timeout_s=30)])
    clock.advance(29)
    [posted] = await funded.create_transfers([post("post", "hold", 600)])
    assert posted.result is R.OK
    clock.advance(10)
    assert await funded.expire_pending() == 0
    await check_invariants(funded.engine)


async def test_the_sweeper_limit_is_bounded(funded: SqlLedger) -> None:
    with pytest.raises(ValueOutOfRange):
        await funded.expire_pending(limit=0)


async def test_a_hold_and_its_release_chain_settle_an_escrow(funded: SqlLedger) -> None:
    """The escrow package's release: post the hold, pay out net and fee, linked."""
    await funded.create_transfers([hold("hold", 1000)])
    outcomes = await funded.create_transfers(
        [
            post("post", "hold", 1000, flags=F.LINKED),
            payment("net", ESCROW, BOB, 950, flags=F.LINKED),
            payment("fee", ESCROW, "platform:revenue", 50, code=TransferCode.FEE),
        ]
    )
    assert [o.result for o in outcomes] == [R.OK, R.OK, R.OK]
    escrow = await balance_of(funded, ESCROW)
    assert (escrow.credits_posted, escrow.debits_posted, escrow.available) == (1000, 1000, 0)
    assert (await balance_of(funded, BOB)).available == 950
    await check_invariants(funded.engine)


def test_pending_status_names_follow_the_house_vocabulary() -> None:
    assert [status.value for status in PendingStatus] == ["pending", "posted", "voided", "expired"]
