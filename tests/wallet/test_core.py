"""The pure batch planner decides money exactly as TigerBeetle would.

Each test feeds plain in-memory accounts (``MemoryLedger``) to
``plan_batch`` and checks outcomes and the resulting totals: ordering within
a batch, overdraft refusal, linked chains, pending holds (post, partial post,
void, exactly once, expiry counted before any sweeper), idempotent replays
and every validation code. No database is involved.
"""

from __future__ import annotations

import pytest

from tests.wallet.memory_ledger import ALICE, BOB, CAROL, DOLLARS, ISSUANCE, START_US, MemoryLedger
from wallet import (
    BATCH_SIZE_MAX,
    ID_LENGTH_MAX,
    PENDING_TIMEOUT_S_MAX,
    TRANSFER_AMOUNT_MAX,
    USER_DATA_LENGTH_MAX,
    AccountCode,
    AccountFlags,
    AccountResult,
    LedgerId,
    NewAccount,
    NewTransfer,
    PendingStatus,
    TransferCode,
    TransferFlags,
    TransferResult,
)
from wallet.core import PendingHold, plan_accounts, plan_batch, release_expired
from wallet.validation import expiry_transfer_id

R = TransferResult
F = TransferFlags


def transfer(
    transfer_id: str,
    debit_account_id: str,
    credit_account_id: str,
    amount: int,
    /,
    *,
    flags: TransferFlags = F.NONE,
    pending_id: str | None = None,
    timeout_s: int = 0,
    ledger: LedgerId = LedgerId.CREDITS,
    user_data: str = "",
) -> NewTransfer:
    return NewTransfer(
        id=transfer_id,
        debit_account_id=debit_account_id,
        credit_account_id=credit_account_id,
        amount=amount,
        ledger=ledger,
        code=TransferCode.TRANSFER,
        flags=flags,
        pending_id=pending_id,
        timeout_s=timeout_s,
        user_data=user_data,
    )


def funded(amount: int = 1000) -> MemoryLedger:
    ledger = MemoryLedger()
    assert ledger.results([transfer("mint", ISSUANCE, ALICE, amount)]) == [R.OK]
    return ledger


def test_a_payment_moves_posted_totals_from_debit_to_credit() -> None:
    ledger = funded(1000)
    assert ledger.results([transfer("pay", ALICE, BOB, 300)]) == [R.OK]
    assert ledger.accounts[ALICE].available == 700
    assert ledger.accounts[BOB].available == 300
    assert ledger.accounts[ISSUANCE].debits_posted == 1000
    assert ledger.stored_totals() == ledger.recomputed_totals()


def test_each_transfer_in_a_batch_sees_the_earlier_ones() -> None:
    ledger = MemoryLedger()
    results = ledger.results(
        [
            transfer("mint", ISSUANCE, ALICE, 500),
            transfer("pay-1", ALICE, BOB, 400),
            transfer("pay-2", ALICE, BOB, 200),
            transfer("pay-3", BOB, CAROL, 400),
        ]
    )
    assert results == [R.OK, R.OK, R.EXCEEDS_CREDITS, R.OK]
    assert ledger.accounts[ALICE].available == 100
    assert ledger.accounts[CAROL].available == 400


def test_an_overdraw_is_refused_and_stored_but_an_unlimited_account_may_go_negative() -> None:
    ledger = funded(100)
    plan = ledger.submit([transfer("pay", ALICE, BOB, 101)])
    assert [o.result for o in plan.outcomes] == [R.EXCEEDS_CREDITS]
    assert [failure.id for failure in plan.failures] == ["pay"]
    assert plan.account_deltas == {}
    # The issuance account has no limit: its debit balance is all ever minted.
    assert ledger.results([transfer("mint-2", ISSUANCE, BOB, 10**12)]) == [R.OK]
    assert ledger.accounts[ISSUANCE].available == -(10**12 + 100)


def test_held_funds_are_not_available_for_spending() -> None:
    ledger = funded(1000)
    results = ledger.results(
        [transfer("hold", ALICE, BOB, 800, flags=F.PENDING), transfer("pay", ALICE, BOB, 300)]
    )
    assert results == [R.OK, R.EXCEEDS_CREDITS]
    assert ledger.accounts[ALICE].held == 800
    assert ledger.accounts[ALICE].available == 200


def test_a_linked_chain_fails_as_a_whole_with_the_failing_member_named() -> None:
    ledger = funded(1000)
    plan = ledger.submit(
        [
            transfer("a", ALICE, BOB, 600, flags=F.LINKED),
            transfer("b", ALICE, CAROL, 600, flags=F.LINKED),
            transfer("c", BOB, CAROL, 1),
            transfer("d", ALICE, CAROL, 50),
        ]
    )
    assert [o.result for o in plan.outcomes] == [
        R.LINKED_EVENT_FAILED,
        R.EXCEEDS_CREDITS,
        R.LINKED_EVENT_FAILED,
        R.OK,
    ]
    assert ledger.accounts[ALICE].available == 950
    assert ledger.accounts[BOB].available == 0
    # Only the member whose failure depends on state is remembered.
    assert [failure.id for failure in plan.failures] == ["b"]


def test_a_linked_chain_that_succeeds_applies_every_member() -> None:
    ledger = funded(1000)
    results = ledger.results(
        [transfer("a", ALICE, BOB, 600, flags=F.LINKED), transfer("b", BOB, CAROL, 600)]
    )
    assert results == [R.OK, R.OK]
    assert ledger.accounts[CAROL].available == 600


def test_a_batch_ending_inside_a_chain_refuses_that_chain() -> None:
    ledger = funded(1000)
    results = ledger.results(
        [
            transfer("a", ALICE, BOB, 1),
            transfer("b", ALICE, BOB, 1, flags=F.LINKED),
            transfer("c", ALICE, BOB, 1, flags=F.LINKED),
        ]
    )
    assert results == [R.OK, R.LINKED_EVENT_FAILED, R.LINKED_EVENT_CHAIN_OPEN]
    assert ledger.accounts[BOB].available == 1


def test_posting_part_of_a_hold_posts_that_part_and_releases_the_rest() -> None:
    ledger = funded(1000)
    assert ledger.results([transfer("hold", ALICE, BOB, 600, flags=F.PENDING)]) == [R.OK]
    post = transfer("post", ALICE, BOB, 250, flags=F.POST_PENDING, pending_id="hold")
    assert ledger.results([post]) == [R.OK]
    alice, bob = ledger.accounts[ALICE], ledger.accounts[BOB]
    assert (alice.held, alice.available, bob.credits_pending, bob.available) == (0, 750, 0, 250)
    assert ledger.holds["hold"].status is PendingStatus.POSTED
    assert ledger.stored_totals() == ledger.recomputed_totals()


def test_a_hold_resolves_exactly_once() -> None:
    ledger = funded(1000)
    ledger.submit([transfer("hold", ALICE, BOB, 600, flags=F.PENDING)])
    results = ledger.results(
        [
            transfer("post", ALICE, BOB, 600, flags=F.POST_PENDING, pending_id="hold"),
            transfer("post-again", ALICE, BOB, 600, flags=F.POST_PENDING, pending_id="hold"),
            transfer("void", ALICE, BOB, 600, flags=F.VOID_PENDING, pending_id="hold"),
        ]
    )
    assert results == [R.OK, R.PENDING_TRANSFER_ALREADY_POSTED, R.PENDING_TRANSFER_ALREADY_POSTED]
    ledger.submit([transfer("hold-2", ALICE, BOB, 100, flags=F.PENDING)])
    results = ledger.results(
        [
            transfer("void-2", ALICE, BOB, 100, flags=F.VOID_PENDING, pending_id="hold-2"),
            transfer("post-2", ALICE, BOB, 100, flags=F.POST_PENDING, pending_id="hold-2"),
        ]
    )
    assert results == [R.OK, R.PENDING_TRANSFER_ALREADY_VOIDED]
    assert ledger.accounts[ALICE].available == 400


@pytest.mark.parametrize(
    ("resolution", "expected"),
    [
        (
            transfer("r", ALICE, BOB, 601, flags=F.POST_PENDING, pending_id="hold"),
            R.PENDING_AMOUNT_EXCEEDED,
        ),
        (
            transfer("r", ALICE, BOB, 599, flags=F.VOID_PENDING, pending_id="hold"),
            R.PENDING_TRANSFER_HAS_DIFFERENT_AMOUNT,
        ),
        (
            transfer("r", CAROL, BOB, 600, flags=F.POST_PENDING, pending_id="hold"),
            R.PENDING_TRANSFER_HAS_DIFFERENT_DEBIT_ACCOUNT,
        ),
        (
            transfer("r", ALICE, CAROL, 600, flags=F.VOID_PENDING, pending_id="hold"),
            R.PENDING_TRANSFER_HAS_DIFFERENT_CREDIT_ACCOUNT,
        ),
        (
            transfer("r", ALICE, BOB, 600, flags=F.POST_PENDING, pending_id="nothing"),
            R.PENDING_TRANSFER_NOT_FOUND,
        ),
        (
            transfer("r", ALICE, BOB, 600, flags=F.POST_PENDING, pending_id="mint"),
            R.PENDING_TRANSFER_NOT_PENDING,
        ),
    ],
)
def test_a_post_or_void_must_match_its_hold(
    resolution: NewTransfer, expected: TransferResult
) -> None:
    ledger = funded(1000)
    ledger.submit([transfer("hold", ALICE, BOB, 600, flags=F.PENDING)])
    plan = ledger.submit([resolution])
    assert [o.result for o in plan.outcomes] == [expected]
    assert [failure.result for failure in plan.failures] == [expected]
    assert ledger.holds["hold"].status is PendingStatus.PENDING


def test_a_hold_and_its_post_may_share_a_batch() -> None:
    ledger = funded(1000)
    results = ledger.results(
        [
            transfer("hold", ALICE, BOB, 600, flags=F.PENDING | F.LINKED),
            transfer("post", ALICE, BOB, 600, flags=F.POST_PENDING, pending_id="hold"),
        ]
    )
    assert results == [R.OK, R.OK]
    assert ledger.holds["hold"].status is PendingStatus.POSTED
    assert ledger.stored_totals() == ledger.recomputed_totals()


def test_a_hold_past_its_deadline_is_released_before_the_batch_and_cannot_be_posted() -> None:
    ledger = funded(1000)
    ledger.submit([transfer("hold", ALICE, BOB, 600, flags=F.PENDING, timeout_s=60)])
    deadline_us = ledger.holds["hold"].expires_at_us
    assert deadline_us is not None
    ledger.now_us = deadline_us
    plan = ledger.submit(
        [
            transfer("post", ALICE, BOB, 600, flags=F.POST_PENDING, pending_id="hold"),
            transfer("spend", ALICE, CAROL, 1000),
        ]
    )
    assert [o.result for o in plan.outcomes] == [R.PENDING_TRANSFER_EXPIRED, R.OK]
    assert plan.expired_count == 1
    expiry = plan.records[0]
    assert expiry.id == expiry_transfer_id("hold")
    assert (expiry.code, expiry.flags, expiry.pending_id) == (
        TransferCode.EXPIRY,
        F.VOID_PENDING,
        "hold",
    )
    assert ledger.holds["hold"].status is PendingStatus.EXPIRED
    assert ledger.stored_totals() == ledger.recomputed_totals()


def test_a_hold_just_before_its_deadline_can_still_be_posted() -> None:
    ledger = funded(1000)
    ledger.submit([transfer("hold", ALICE, BOB, 600, flags=F.PENDING, timeout_s=60)])
    deadline_us = ledger.holds["hold"].expires_at_us
    assert deadline_us is not None
    ledger.now_us = deadline_us - 1
    post = transfer("post", ALICE, BOB, 600, flags=F.POST_PENDING, pending_id="hold")
    assert ledger.results([post]) == [R.OK]


def test_a_hold_past_its_deadline_counts_as_released_for_readers() -> None:
    ledger = funded(1000)
    ledger.submit([transfer("hold", ALICE, BOB, 600, flags=F.PENDING, timeout_s=1)])
    hold = ledger.holds["hold"]
    assert hold.expires_at_us is not None
    before = release_expired(ledger.accounts, [hold], now_us=hold.expires_at_us - 1)
    after = release_expired(ledger.accounts, [hold], now_us=hold.expires_at_us)
    assert before[ALICE].available == 400
    assert after[ALICE].available == 1000
    assert after[BOB].credits_pending == 0


def test_an_expired_hold_whose_other_account_is_not_loaded_is_left_for_the_sweeper() -> None:
    ledger = funded(1000)
    ledger.submit([transfer("hold", ALICE, BOB, 600, flags=F.PENDING, timeout_s=1)])
    ledger.now_us += 2_000_000
    accounts = {ALICE: ledger.accounts[ALICE], CAROL: ledger.accounts[CAROL]}
    plan = plan_batch(
        [transfer("spend", ALICE, CAROL, 1000)],
        accounts=accounts,
        holds=ledger.holds,
        existing=ledger.outcomes,
        now_us=ledger.now_us,
        last_timestamp_us=ledger.records[-1].timestamp_us,
    )
    # Still held in the stored totals, so the spend must wait for the sweeper.
    assert plan.expired_count == 0
    assert [o.result for o in plan.outcomes] == [R.EXCEEDS_CREDITS]


def test_a_retry_with_identical_fields_returns_the_first_outcome_and_changes_nothing() -> None:
    ledger = funded(1000)
    first = ledger.submit([transfer("pay", ALICE, BOB, 300)]).outcomes[0]
    retry = ledger.submit([transfer("pay", ALICE, BOB, 300)])
    assert retry.outcomes[0].result is R.OK
    assert retry.outcomes[0].replayed
    assert retry.outcomes[0].timestamp_us == first.timestamp_us
    assert (retry.records, retry.account_deltas) == ((), {})
    assert ledger.accounts[BOB].available == 300


def test_a_stored_failure_is_replayed_even_after_funds_arrive() -> None:
    ledger = funded(100)
    assert ledger.results([transfer("pay", ALICE, BOB, 300)]) == [R.EXCEEDS_CREDITS]
    ledger.submit([transfer("mint-2", ISSUANCE, ALICE, 1000)])
    retry = ledger.submit([transfer("pay", ALICE, BOB, 300)]).outcomes[0]
    assert (retry.result, retry.replayed) == (R.EXCEEDS_CREDITS, True)
    assert ledger.accounts[BOB].available == 0


def test_the_same_id_with_different_fields_is_refused() -> None:
    ledger = funded(1000)
    ledger.submit([transfer("pay", ALICE, BOB, 300)])
    results = ledger.results(
        [transfer("pay", ALICE, BOB, 301), transfer("pay", ALICE, BOB, 300, user_data="x")]
    )
    assert results == [R.EXISTS_WITH_DIFFERENT_FIELDS, R.EXISTS_WITH_DIFFERENT_FIELDS]
    assert ledger.accounts[BOB].available == 300


def test_a_duplicate_id_inside_one_batch_is_a_replay_of_the_first() -> None:
    ledger = funded(1000)
    plan = ledger.submit([transfer("pay", ALICE, BOB, 300), transfer("pay", ALICE, BOB, 300)])
    assert [(o.result, o.replayed) for o in plan.outcomes] == [(R.OK, False), (R.OK, True)]
    assert ledger.accounts[BOB].available == 300


def test_a_validation_failure_is_not_stored_because_it_is_deterministic() -> None:
    ledger = funded(1000)
    plan = ledger.submit([transfer("pay", ALICE, BOB, 0)])
    assert [o.result for o in plan.outcomes] == [R.AMOUNT_MUST_BE_POSITIVE]
    assert plan.failures == ()
    assert plan.outcomes[0].timestamp_us is None


def test_unknown_accounts_and_ledger_mismatches_are_refused() -> None:
    ledger = funded(1000)
    results = ledger.results(
        [
            transfer("a", "agent:nobody", BOB, 1),
            transfer("b", ALICE, "agent:nobody", 1),
            transfer("c", ALICE, DOLLARS, 1),
            transfer("d", ALICE, BOB, 1, ledger=LedgerId.USD_CENTS),
        ]
    )
    assert results == [
        R.DEBIT_ACCOUNT_NOT_FOUND,
        R.CREDIT_ACCOUNT_NOT_FOUND,
        R.ACCOUNTS_HAVE_DIFFERENT_LEDGERS,
        R.TRANSFER_LEDGER_MISMATCH,
    ]


@pytest.mark.parametrize(
    ("invalid", "expected"),
    [
        (transfer("", ALICE, BOB, 1), R.ID_INVALID),
        (transfer("x" * (ID_LENGTH_MAX + 1), ALICE, BOB, 1), R.ID_INVALID),
        (transfer("ledger:mine", ALICE, BOB, 1), R.ID_RESERVED),
        (transfer("t", ALICE, BOB, 1, flags=TransferFlags(16)), R.FLAGS_INVALID),
        (
            transfer("t", ALICE, BOB, 1, flags=F.PENDING | F.VOID_PENDING, pending_id="p"),
            R.FLAGS_ARE_MUTUALLY_EXCLUSIVE,
        ),
        (transfer("t", ALICE, BOB, 1, flags=F.POST_PENDING), R.PENDING_ID_REQUIRED),
        (transfer("t", ALICE, BOB, 1, pending_id="p"), R.PENDING_ID_MUST_BE_ABSENT),
        (transfer("t", ALICE, BOB, 1, flags=F.VOID_PENDING, pending_id=""), R.PENDING_ID_INVALID),
        (
            transfer("t", ALICE, BOB, 1, flags=F.VOID_PENDING, pending_id="t"),
            R.PENDING_ID_MUST_BE_DIFFERENT,
        ),
        (transfer("t", ALICE, BOB, 1, timeout_s=5), R.TIMEOUT_RESERVED_FOR_PENDING),
        (
            transfer("t", ALICE, BOB, 1, flags=F.PENDING, timeout_s=-1),
            R.TIMEOUT_MUST_NOT_BE_NEGATIVE,
        ),
        (
            transfer("t", ALICE, BOB, 1, flags=F.PENDING, timeout_s=PENDING_TIMEOUT_S_MAX + 1),
            R.TIMEOUT_EXCEEDS_LIMIT,
        ),
        (transfer("t", "", BOB, 1), R.DEBIT_ACCOUNT_ID_INVALID),
        (transfer("t", ALICE, "y" * (ID_LENGTH_MAX + 1), 1), R.CREDIT_ACCOUNT_ID_INVALID),
        (transfer("t", ALICE, ALICE, 1), R.ACCOUNTS_MUST_BE_DIFFERENT),
        (transfer("t", ALICE, BOB, 0), R.AMOUNT_MUST_BE_POSITIVE),
        (transfer("t", ALICE, BOB, -5), R.AMOUNT_MUST_BE_POSITIVE),
        (transfer("t", ALICE, BOB, TRANSFER_AMOUNT_MAX + 1), R.AMOUNT_EXCEEDS_LIMIT),
        (
            transfer("t", ALICE, BOB, 1, user_data="u" * (USER_DATA_LENGTH_MAX + 1)),
            R.USER_DATA_TOO_LONG,
        ),
    ],
)
def test_an_invalid_transfer_gets_its_own_code_and_changes_nothing(
    invalid: NewTransfer, expected: TransferResult
) -> None:
    ledger = funded(1000)
    plan = ledger.submit([invalid])
    assert [o.result for o in plan.outcomes] == [expected]
    assert (plan.records, plan.failures, plan.account_deltas) == ((), (), {})


def test_a_float_amount_is_a_programming_error_caught_at_construction() -> None:
    with pytest.raises(AssertionError):
        transfer("t", ALICE, BOB, 1.5)  # type: ignore[arg-type]


def test_a_batch_over_the_size_limit_is_refused_whole() -> None:
    ledger = funded(1000)
    batch = [transfer(f"t{index}", ALICE, BOB, 1) for index in range(BATCH_SIZE_MAX + 1)]
    plan = ledger.submit(batch)
    assert {o.result for o in plan.outcomes} == {R.BATCH_TOO_LARGE}
    assert plan.records == ()


def test_timestamps_strictly_increase_after_the_last_stored_one() -> None:
    ledger = funded(1000)
    ledger.now_us = START_US - 5_000_000  # the wall clock stepped back
    plan = ledger.submit([transfer("a", ALICE, BOB, 1), transfer("b", ALICE, BOB, 1)])
    timestamps = [record.timestamp_us for record in ledger.records]
    assert timestamps == sorted(set(timestamps))
    assert plan.records[0].timestamp_us > START_US


def test_planned_holds_carry_their_deadline() -> None:
    ledger = funded(1000)
    plan = ledger.submit([transfer("hold", ALICE, BOB, 5, flags=F.PENDING, timeout_s=30)])
    [hold] = plan.holds_created
    assert hold == PendingHold(
        id="hold",
        debit_account_id=ALICE,
        credit_account_id=BOB,
        amount=5,
        ledger=LedgerId.CREDITS,
        status=PendingStatus.PENDING,
        expires_at_us=plan.records[0].timestamp_us + 30_000_000,
        user_data="",
    )


def test_planning_accounts_accepts_identical_repeats_and_refuses_changes() -> None:
    wallet = NewAccount(
        ALICE,
        LedgerId.CREDITS,
        AccountCode.AGENT_WALLET,
        AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS,
    )
    changed = NewAccount(ALICE, LedgerId.CREDITS, AccountCode.AGENT_WALLET, AccountFlags.NONE)
    new = NewAccount(BOB, LedgerId.CREDITS, AccountCode.AGENT_WALLET, AccountFlags.NONE)
    invalid = NewAccount("", LedgerId.CREDITS, AccountCode.AGENT_WALLET, AccountFlags.NONE)
    unknown_flag = NewAccount(CAROL, LedgerId.CREDITS, AccountCode.ESCROW, AccountFlags(8))
    outcomes, inserts = plan_accounts(
        [wallet, changed, new, new, invalid, unknown_flag], existing={ALICE: wallet}
    )
    assert [(o.result, o.replayed) for o in outcomes] == [
        (AccountResult.OK, True),
        (AccountResult.EXISTS_WITH_DIFFERENT_FIELDS, False),
        (AccountResult.OK, False),
        (AccountResult.OK, True),
        (AccountResult.ID_INVALID, False),
        (AccountResult.FLAGS_INVALID, False),
    ]
    assert inserts == [new]


def test_a_decided_transfer_answers_with_its_outcome_even_inside_a_refused_chain() -> None:
    ledger = funded(1000)
    ledger.submit([transfer("pay", ALICE, BOB, 300)])
    plan = ledger.submit(
        [transfer("bad", ALICE, BOB, 0, flags=F.LINKED), transfer("pay", ALICE, BOB, 300)]
    )
    assert [(o.result, o.replayed) for o in plan.outcomes] == [
        (R.AMOUNT_MUST_BE_POSITIVE, False),
        (R.OK, True),
    ]
    assert ledger.accounts[BOB].available == 300


def test_a_repeat_of_a_member_inside_its_own_failed_chain_is_not_reported_as_applied() -> None:
    ledger = funded(1000)
    plan = ledger.submit(
        [
            transfer("pay", ALICE, BOB, 300, flags=F.LINKED),
            transfer("pay", ALICE, BOB, 300, flags=F.LINKED),
            transfer("too-much", ALICE, CAROL, 5000),
        ]
    )
    assert [(o.result, o.replayed) for o in plan.outcomes] == [
        (R.LINKED_EVENT_FAILED, False),
        (R.LINKED_EVENT_FAILED, False),
        (R.EXCEEDS_CREDITS, False),
    ]
    assert ledger.accounts[BOB].available == 0
