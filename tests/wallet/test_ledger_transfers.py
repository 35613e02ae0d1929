"""Transfers through the SQL ledger, on a real SQLite file and real PostgreSQL.

Minting and spending move the four totals; history lists newest first and
pages by timestamp; idempotency holds across calls (a retry returns the
first outcome, stored failures included, and changes nothing); linked chains
are all-or-nothing; invalid transfers and unknown accounts are refused with
their codes and leave every balance and history untouched. Every test ends
with ``check_invariants``.
"""

from __future__ import annotations

import pytest

from tests.wallet.ledger_helpers import (
    ALICE,
    BOB,
    CAROL,
    ISSUANCE,
    REVENUE,
    balance_of,
    mint,
    mint_into,
    open_accounts,
    payment,
    snapshot,
)
from wallet import (
    ACCOUNT_TRANSFERS_LIMIT_MAX,
    BATCH_SIZE_MAX,
    TRANSFER_AMOUNT_MAX,
    LedgerId,
    NewTransfer,
    SqlLedger,
    TransferCode,
    TransferFlags,
    TransferResult,
    ValueOutOfRange,
    check_invariants,
)

R = TransferResult


async def test_a_mint_then_spends_move_the_totals_and_refuse_an_overdraw(
    ledger: SqlLedger,
) -> None:
    await open_accounts(ledger, ALICE, BOB)
    outcomes = await ledger.create_transfers(
        [
            mint("mint-1", ALICE, 1000),
            payment("pay-1", ALICE, BOB, 300),
            payment("pay-2", ALICE, BOB, 700),
            payment("pay-3", ALICE, BOB, 1),
        ]
    )
    assert [o.result for o in outcomes] == [R.OK, R.OK, R.OK, R.EXCEEDS_CREDITS]
    alice, bob = await balance_of(ledger, ALICE), await balance_of(ledger, BOB)
    assert (alice.credits_posted, alice.debits_posted, alice.available) == (1000, 1000, 0)
    assert bob.available == 1000
    assert (await balance_of(ledger, ISSUANCE)).debits_posted == 1000
    await check_invariants(ledger.engine)


async def test_history_lists_newest_first_and_pages_by_timestamp(ledger: SqlLedger) -> None:
    await open_accounts(ledger, ALICE, BOB)
    await ledger.create_transfers([mint("mint", ALICE, 1000)])
    for index in range(5):
        await ledger.create_transfers([payment(f"pay-{index}", ALICE, BOB, 10)])
    await ledger.create_transfers([payment("back", BOB, ALICE, 5)])
    first_page = await ledger.account_transfers(ALICE, limit=3)
    assert [r.id for r in first_page] == ["back", "pay-4", "pay-3"]
    second_page = await ledger.account_transfers(
        ALICE, limit=3, before_timestamp_us=first_page[-1].timestamp_us
    )
    assert [r.id for r in second_page] == ["pay-2", "pay-1", "pay-0"]
    last_page = await ledger.account_transfers(
        ALICE, limit=3, before_timestamp_us=second_page[-1].timestamp_us
    )
    assert [r.id for r in last_page] == ["mint"]
    record = second_page[0]
    assert (record.debit_account_id, record.credit_account_id, record.amount) == (ALICE, BOB, 10)
    assert (record.code, record.flags, record.ledger) == (
        TransferCode.TRANSFER,
        TransferFlags.NONE,
        LedgerId.CREDITS,
    )
    await check_invariants(ledger.engine)


@pytest.mark.parametrize("limit", [0, ACCOUNT_TRANSFERS_LIMIT_MAX + 1])
async def test_history_limits_outside_their_bounds_raise(ledger: SqlLedger, limit: int) -> None:
    with pytest.raises(ValueOutOfRange):
        await ledger.account_transfers(ALICE, limit=limit)


async def test_a_retry_with_the_same_id_returns_the_first_outcome_and_changes_nothing(
    ledger: SqlLedger,
) -> None:
    await open_accounts(ledger, ALICE, BOB)
    await mint_into(ledger, ALICE, 1000, key="alice")
    [first] = await ledger.create_transfers([payment("pay", ALICE, BOB, 300)])
    before = await snapshot(ledger, ALICE, BOB)
    [retry] = await ledger.create_transfers([payment("pay", ALICE, BOB, 300)])
    assert (first.result, first.replayed) == (R.OK, False)
    assert (retry.result, retry.replayed) == (R.OK, True)
    assert retry.timestamp_us == first.timestamp_us
    assert await snapshot(ledger, ALICE, BOB) == before
    await check_invariants(ledger.engine)


async def test_the_same_id_with_different_fields_is_refused(ledger: SqlLedger) -> None:
    await open_accounts(ledger, ALICE, BOB, CAROL)
    await mint_into(ledger, ALICE, 1000, key="alice")
    await ledger.create_transfers([payment("pay", ALICE, BOB, 300)])
    before = await snapshot(ledger, ALICE, BOB, CAROL)
    outcomes = await ledger.create_transfers(
        [payment("pay", ALICE, BOB, 301), payment("pay", ALICE, CAROL, 300)]
    )
    assert [o.result for o in outcomes] == [R.EXISTS_WITH_DIFFERENT_FIELDS] * 2
    assert await snapshot(ledger, ALICE, BOB, CAROL) == before
    await check_invariants(ledger.engine)


async def test_a_stored_failure_is_returned_again_even_after_funds_arrive(
    ledger: SqlLedger,
) -> None:
    await open_accounts(ledger, ALICE, BOB)
    await mint_into(ledger, ALICE, 100, key="first")
    [first] = await ledger.create_transfers([payment("pay", ALICE, BOB, 300)])
    assert (first.result, first.replayed) == (R.EXCEEDS_CREDITS, False)
    await mint_into(ledger, ALICE, 1000, key="second")
    [retry] = await ledger.create_transfers([payment("pay", ALICE, BOB, 300)])
    assert (retry.result, retry.replayed) == (R.EXCEEDS_CREDITS, True)
    assert retry.timestamp_us == first.timestamp_us
    assert (await balance_of(ledger, BOB)).available == 0
    # A new id is a new request and succeeds.
    [fresh] = await ledger.create_transfers([payment("pay-again", ALICE, BOB, 300)])
    assert fresh.result is R.OK
    await check_invariants(ledger.engine)


async def test_a_linked_chain_is_all_or_nothing(ledger: SqlLedger) -> None:
    await open_accounts(ledger, ALICE, BOB, CAROL)
    await mint_into(ledger, ALICE, 1000, key="alice")
    before = await snapshot(ledger, ALICE, BOB, CAROL, REVENUE)
    failed = await ledger.create_transfers(
        [
            payment("net", ALICE, BOB, 950, flags=TransferFlags.LINKED),
            payment("fee", ALICE, REVENUE, 60),
        ]
    )
    assert [o.result for o in failed] == [R.LINKED_EVENT_FAILED, R.EXCEEDS_CREDITS]
    assert await snapshot(ledger, ALICE, BOB, CAROL, REVENUE) == before
    succeeded = await ledger.create_transfers(
        [
            payment("net-2", ALICE, BOB, 950, flags=TransferFlags.LINKED),
            payment("fee-2", ALICE, REVENUE, 50),
        ]
    )
    assert [o.result for o in succeeded] == [R.OK, R.OK]
    assert (await balance_of(ledger, REVENUE)).available == 50
    await check_invariants(ledger.engine)


async def test_a_batch_ending_inside_a_chain_changes_nothing(ledger: SqlLedger) -> None:
    await open_accounts(ledger, ALICE, BOB)
    await mint_into(ledger, ALICE, 1000, key="alice")
    before = await snapshot(ledger, ALICE, BOB)
    outcomes = await ledger.create_transfers(
        [payment("open", ALICE, BOB, 1, flags=TransferFlags.LINKED)]
    )
    assert [o.result for o in outcomes] == [R.LINKED_EVENT_CHAIN_OPEN]
    assert await snapshot(ledger, ALICE, BOB) == before
    await check_invariants(ledger.engine)


@pytest.mark.parametrize(
    ("amount", "expected"),
    [
        (0, R.AMOUNT_MUST_BE_POSITIVE),
        (-100, R.AMOUNT_MUST_BE_POSITIVE),
        (TRANSFER_AMOUNT_MAX + 1, R.AMOUNT_EXCEEDS_LIMIT),
    ],
)
async def test_a_zero_negative_or_over_limit_amount_is_refused_and_changes_nothing(
    ledger: SqlLedger, amount: int, expected: TransferResult
) -> None:
    await open_accounts(ledger, ALICE, BOB)
    await mint_into(ledger, ALICE, 1000, key="alice")
    before = await snapshot(ledger, ALICE, BOB, ISSUANCE)
    outcomes = await ledger.create_transfers(
        [payment("bad", ALICE, BOB, amount), mint("bad-mint", BOB, amount)]
    )
    assert [o.result for o in outcomes] == [expected, expected]
    assert await snapshot(ledger, ALICE, BOB, ISSUANCE) == before
    await check_invariants(ledger.engine)


async def test_unknown_accounts_are_refused_with_their_codes_and_change_nothing(
    ledger: SqlLedger,
) -> None:
    await open_accounts(ledger, ALICE)
    await mint_into(ledger, ALICE, 1000, key="alice")
    before = await snapshot(ledger, ALICE)
    outcomes = await ledger.create_transfers(
        [
            payment("to-nobody", ALICE, "agent:nobody", 10),
            payment("from-nobody", "agent:nobody", ALICE, 10),
        ]
    )
    assert [o.result for o in outcomes] == [R.CREDIT_ACCOUNT_NOT_FOUND, R.DEBIT_ACCOUNT_NOT_FOUND]
    assert await snapshot(ledger, ALICE) == before
    await check_invariants(ledger.engine)


async def test_a_transfer_on_the_wrong_ledger_is_refused(ledger: SqlLedger) -> None:
    await open_accounts(ledger, ALICE, BOB)
    await mint_into(ledger, ALICE, 1000, key="alice")
    wrong = NewTransfer(
        id="cents",
        debit_account_id=ALICE,
        credit_account_id=BOB,
        amount=10,
        ledger=LedgerId.USD_CENTS,
        code=TransferCode.TRANSFER,
    )
    [outcome] = await ledger.create_transfers([wrong])
    assert outcome.result is R.TRANSFER_LEDGER_MISMATCH
    await check_invariants(ledger.engine)


async def test_a_batch_over_the_size_limit_is_refused_whole(ledger: SqlLedger) -> None:
    await open_accounts(ledger, ALICE, BOB)
    await mint_into(ledger, ALICE, 1000, key="alice")
    batch = [payment(f"pay-{index}", ALICE, BOB, 1) for index in range(BATCH_SIZE_MAX + 1)]
    outcomes = await ledger.create_transfers(batch)
    assert {o.result for o in outcomes} == {R.BATCH_TOO_LARGE}
    assert (await balance_of(ledger, BOB)).available == 0
    await check_invariants(ledger.engine)


async def test_a_full_batch_applies_in_one_call(ledger: SqlLedger) -> None:
    await open_accounts(ledger, ALICE, BOB)
    await mint_into(ledger, ALICE, BATCH_SIZE_MAX, key="alice")
    batch = [payment(f"pay-{index}", ALICE, BOB, 1) for index in range(BATCH_SIZE_MAX)]
    outcomes = await ledger.create_transfers(batch)
    assert {o.result for o in outcomes} == {R.OK}
    assert (await balance_of(ledger, BOB)).available == BATCH_SIZE_MAX
    await check_invariants(ledger.engine)


async def test_an_empty_batch_does_nothing(ledger: SqlLedger) -> None:
    assert await ledger.create_transfers([]) == []
    assert await ledger.create_accounts([]) == []
    await check_invariants(ledger.engine)
