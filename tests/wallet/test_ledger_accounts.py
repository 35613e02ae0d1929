"""Creating and looking up accounts on a real SQLite file and real PostgreSQL.

Creating is idempotent (an identical account again is ``ok`` and marked
``replayed``), a changed definition is refused, invalid accounts get their
own codes, and lookups return only accounts that exist, with zero totals.
"""

from __future__ import annotations

import pytest

from tests.wallet.ledger_helpers import ALICE, BOB, PLATFORM_ACCOUNTS, wallet_account
from wallet import (
    AccountCode,
    AccountFlags,
    AccountResult,
    LedgerId,
    NewAccount,
    SqlLedger,
    ValueOutOfRange,
    check_invariants,
)
from wallet.limits import ACCOUNT_LOOKUP_SIZE_MAX, BATCH_SIZE_MAX


async def test_created_accounts_can_be_looked_up_with_zero_totals(ledger: SqlLedger) -> None:
    outcomes = await ledger.create_accounts([*PLATFORM_ACCOUNTS, wallet_account(ALICE)])
    assert {outcome.result for outcome in outcomes} == {AccountResult.OK}
    assert not any(outcome.replayed for outcome in outcomes)
    balances = await ledger.lookup_accounts([ALICE, "platform:escrow", "agent:nobody"])
    assert set(balances) == {ALICE, "platform:escrow"}
    alice = balances[ALICE]
    assert (alice.ledger, alice.code, alice.flags) == (
        LedgerId.CREDITS,
        AccountCode.AGENT_WALLET,
        AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS,
    )
    assert (alice.debits_pending, alice.debits_posted, alice.credits_pending) == (0, 0, 0)
    assert (alice.credits_posted, alice.available, alice.held) == (0, 0, 0)
    await check_invariants(ledger.engine)


async def test_creating_an_identical_account_again_is_ok_and_marked_replayed(
    ledger: SqlLedger,
) -> None:
    await ledger.create_accounts([wallet_account(ALICE)])
    [again] = await ledger.create_accounts([wallet_account(ALICE)])
    assert (again.result, again.replayed) == (AccountResult.OK, True)


async def test_creating_an_existing_account_with_different_fields_is_refused(
    ledger: SqlLedger,
) -> None:
    await ledger.create_accounts([wallet_account(ALICE)])
    unlimited = NewAccount(ALICE, LedgerId.CREDITS, AccountCode.AGENT_WALLET, AccountFlags.NONE)
    [outcome] = await ledger.create_accounts([unlimited])
    assert outcome.result is AccountResult.EXISTS_WITH_DIFFERENT_FIELDS
    balances = await ledger.lookup_accounts([ALICE])
    assert balances[ALICE].flags is AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS


async def test_invalid_accounts_get_their_own_codes_and_are_not_created(ledger: SqlLedger) -> None:
    too_long = NewAccount("a" * 129, LedgerId.CREDITS, AccountCode.ESCROW, AccountFlags.NONE)
    unknown_flag = NewAccount(BOB, LedgerId.CREDITS, AccountCode.ESCROW, AccountFlags(4))
    outcomes = await ledger.create_accounts([too_long, unknown_flag])
    assert [outcome.result for outcome in outcomes] == [
        AccountResult.ID_INVALID,
        AccountResult.FLAGS_INVALID,
    ]
    assert await ledger.lookup_accounts([BOB]) == {}


async def test_a_batch_of_accounts_over_the_limit_is_refused_whole(ledger: SqlLedger) -> None:
    accounts = [wallet_account(f"agent:{index}") for index in range(BATCH_SIZE_MAX + 1)]
    outcomes = await ledger.create_accounts(accounts)
    assert {outcome.result for outcome in outcomes} == {AccountResult.BATCH_TOO_LARGE}
    assert await ledger.lookup_accounts(["agent:0"]) == {}


async def test_a_lookup_of_too_many_ids_raises_with_the_bound(ledger: SqlLedger) -> None:
    with pytest.raises(ValueOutOfRange) as raised:
        await ledger.lookup_accounts([f"agent:{i}" for i in range(ACCOUNT_LOOKUP_SIZE_MAX + 1)])
    assert raised.value.maximum == ACCOUNT_LOOKUP_SIZE_MAX


async def test_many_accounts_are_created_and_found_across_query_chunks(ledger: SqlLedger) -> None:
    accounts = [wallet_account(f"agent:{index:05}") for index in range(1200)]
    outcomes = await ledger.create_accounts(accounts)
    assert {outcome.result for outcome in outcomes} == {AccountResult.OK}
    balances = await ledger.lookup_accounts([account.id for account in accounts])
    assert len(balances) == 1200
    await check_invariants(ledger.engine)
