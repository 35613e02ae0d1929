"""A metered session's ledger chains hold, capture and release exactly, and replay safely.

Proves, on plain values, that ``metered_hold_transfers``,
``MeteredCapture.transfers`` and ``metered_release_transfers`` are pinned
field by field: every id derives from the contract id and the hold's
sequence (so a retried step is the identical ledger request, and the next
capture names the hold the last one made), every transfer passes the
wallet's validation, a capture chain is linked up to its last member, and a
leg of zero (no rest to hold again, no fee, no net) has no transfer. Then the
chains are applied in order by the wallet's pure planner
(``tests.wallet.memory_ledger``): hold a ceiling, capture twice, release the
rest, with the buyer's, provider's, revenue's and escrow's balances checked
after each step; a retried capture is replayed and pays nothing twice, and a
different capture of a hold already captured is refused. Hypothesis finally
runs random capture sequences through the ledger and checks that every
millicredit of the ceiling ends with the provider, the platform or the buyer.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from escrow import ESCROW_ACCOUNT_ID, REVENUE_ACCOUNT_ID, MeteredCapture
from escrow.machine import metered_hold_transfers, metered_release_transfers
from tests.escrow import escrow_ledger
from tests.escrow.escrow_ledger import BUYER, ISSUANCE, PROVIDER
from tests.wallet.memory_ledger import MemoryLedger
from wallet import (
    LedgerId,
    NewTransfer,
    PendingStatus,
    TransferCode,
    TransferFlags,
    TransferResult,
    fee_split,
)
from wallet.validation import validate_transfer

# Shaped like the exchange's metered session ids ("m_" and 32 hex digits).
CONTRACT_ID = "m_" + "5e" * 16
OTHER_CONTRACT_ID = "m_" + "a7" * 16
FEE_RATE_BPS = 500  # the product plan's 5 %
CEILING = 1_000
FUNDS = 10_000


def hold_id(sequence: int, contract_id: str = CONTRACT_ID) -> str:
    return f"metered:{contract_id}:hold:{sequence}"


def capture(
    sequence: int,
    held: int,
    amount: int,
    *,
    fee_rate_bps: int = FEE_RATE_BPS,
    contract_id: str = CONTRACT_ID,
) -> MeteredCapture:
    """A capture of ``amount`` from hold number ``sequence``, which carries ``held``."""
    fee, net = fee_split(amount, rate_bps=fee_rate_bps)
    return MeteredCapture(
        contract_id=contract_id,
        buyer_account_id=BUYER,
        provider_account_id=PROVIDER,
        hold_sequence=sequence,
        held_millicredits=held,
        capture_millicredits=amount,
        fee_millicredits=fee,
        net_millicredits=net,
    )


def hold(ceiling: int = CEILING) -> list[NewTransfer]:
    return metered_hold_transfers(CONTRACT_ID, buyer_account_id=BUYER, ceiling_millicredits=ceiling)


def release(sequence: int, held: int) -> list[NewTransfer]:
    return metered_release_transfers(
        CONTRACT_ID, buyer_account_id=BUYER, hold_sequence=sequence, held_millicredits=held
    )


def steps_of(chain: list[NewTransfer]) -> list[tuple[str, int]]:
    """Each transfer's step name and sequence number, from its id."""
    return [(t.id.split(":")[2], int(t.id.split(":")[3])) for t in chain]


def linked_flags(chain: list[NewTransfer]) -> list[bool]:
    return [bool(t.flags & TransferFlags.LINKED) for t in chain]


# --- the hold -----------------------------------------------------------------------


def test_the_hold_is_one_pending_transfer_of_the_ceiling_numbered_zero() -> None:
    assert hold() == [
        NewTransfer(
            id=hold_id(0),
            debit_account_id=BUYER,
            credit_account_id=ESCROW_ACCOUNT_ID,
            amount=CEILING,
            ledger=LedgerId.CREDITS,
            code=TransferCode.ESCROW_LOCK,
            flags=TransferFlags.PENDING,
            user_data=CONTRACT_ID,
        )
    ]
    assert validate_transfer(hold()[0]) is TransferResult.OK


@pytest.mark.parametrize("ceiling", [0, -1])
def test_a_hold_of_nothing_is_a_programmer_error(ceiling: int) -> None:
    with pytest.raises(AssertionError):
        hold(ceiling)


# --- a capture chain ----------------------------------------------------------------


def test_a_capture_posts_part_of_the_hold_holds_the_rest_again_and_pays_out() -> None:
    assert capture(0, CEILING, 300).transfers() == [
        NewTransfer(
            id=f"metered:{CONTRACT_ID}:post:0",
            debit_account_id=BUYER,
            credit_account_id=ESCROW_ACCOUNT_ID,
            amount=300,
            ledger=LedgerId.CREDITS,
            code=TransferCode.ESCROW_RELEASE,
            flags=TransferFlags.POST_PENDING | TransferFlags.LINKED,
            pending_id=hold_id(0),
            user_data=CONTRACT_ID,
        ),
        NewTransfer(
            id=hold_id(1),
            debit_account_id=BUYER,
            credit_account_id=ESCROW_ACCOUNT_ID,
            amount=700,
            ledger=LedgerId.CREDITS,
            code=TransferCode.ESCROW_LOCK,
            flags=TransferFlags.PENDING | TransferFlags.LINKED,
            user_data=CONTRACT_ID,
        ),
        NewTransfer(
            id=f"metered:{CONTRACT_ID}:net:0",
            debit_account_id=ESCROW_ACCOUNT_ID,
            credit_account_id=PROVIDER,
            amount=285,
            ledger=LedgerId.CREDITS,
            code=TransferCode.ESCROW_RELEASE,
            flags=TransferFlags.LINKED,
            user_data=CONTRACT_ID,
        ),
        NewTransfer(
            id=f"metered:{CONTRACT_ID}:fee:0",
            debit_account_id=ESCROW_ACCOUNT_ID,
            credit_account_id=REVENUE_ACCOUNT_ID,
            amount=15,
            ledger=LedgerId.CREDITS,
            code=TransferCode.FEE,
            flags=TransferFlags.NONE,
            user_data=CONTRACT_ID,
        ),
    ]


def test_the_next_capture_posts_the_hold_the_last_one_made() -> None:
    chain = capture(1, 700, 200).transfers()
    assert steps_of(chain) == [("post", 1), ("hold", 2), ("net", 1), ("fee", 1)]
    assert chain[0].pending_id == hold_id(1)
    assert [t.amount for t in chain] == [200, 500, 190, 10]


@pytest.mark.parametrize(
    ("made", "expected"),
    [
        # The whole hold captured: nothing is held again.
        (capture(2, 500, 500), [("post", 500), ("net", 475), ("fee", 25)]),
        # A fee too small to be a millicredit: the net closes the chain.
        (capture(0, CEILING, 19), [("post", 19), ("hold", 981), ("net", 19)]),
        (capture(0, CEILING, 300, fee_rate_bps=0), [("post", 300), ("hold", 700), ("net", 300)]),
        # All of it fee: no net transfer.
        (
            capture(0, CEILING, 300, fee_rate_bps=10_000),
            [("post", 300), ("hold", 700), ("fee", 300)],
        ),
        # One millicredit captured, the whole hold, no fee: post and net only.
        (capture(3, 1, 1), [("post", 1), ("net", 1)]),
    ],
)
def test_a_zero_leg_has_no_transfer_and_the_chain_stays_closed(
    made: MeteredCapture, expected: list[tuple[str, int]]
) -> None:
    chain = made.transfers()
    assert [(step, t.amount) for (step, _), t in zip(steps_of(chain), chain, strict=True)] == (
        expected
    )
    assert linked_flags(chain) == [True] * (len(chain) - 1) + [False]
    assert all(t.amount > 0 for t in chain)


def test_a_retried_capture_is_the_identical_chain_and_ids_follow_the_session() -> None:
    assert capture(1, 700, 200).transfers() == capture(1, 700, 200).transfers()
    ours = {t.id for t in capture(1, 700, 200).transfers()}
    theirs = {t.id for t in capture(1, 700, 200, contract_id=OTHER_CONTRACT_ID).transfers()}
    assert not ours & theirs
    # Another amount from the same hold reuses the same ids: the ledger refuses
    # it (different fields) rather than capture the hold twice.
    assert {t.id for t in capture(1, 700, 300).transfers()} == ours


@pytest.mark.parametrize(
    ("held", "amount", "fee", "net"),
    [
        (1_000, 0, 0, 0),  # nothing captured: no chain is due
        (1_000, 1_001, 50, 951),  # more than the hold
        (1_000, 300, 15, 284),  # fee + net short of the capture
        (1_000, 300, -1, 301),  # a negative fee
    ],
)
def test_a_capture_whose_numbers_do_not_add_up_cannot_exist(
    held: int, amount: int, fee: int, net: int
) -> None:
    with pytest.raises(AssertionError):
        MeteredCapture(CONTRACT_ID, BUYER, PROVIDER, 0, held, amount, fee, net)


@given(
    held=st.integers(min_value=1, max_value=10**12),
    share=st.floats(min_value=0, max_value=1),
    fee_rate_bps=st.integers(min_value=0, max_value=10_000),
    sequence=st.integers(min_value=0, max_value=10_000),
)
def test_every_capture_chain_is_valid_closed_and_moves_exactly_the_capture(
    held: int, share: float, fee_rate_bps: int, sequence: int
) -> None:
    amount = max(1, int(held * share))
    made = capture(sequence, held, amount, fee_rate_bps=fee_rate_bps)
    chain = made.transfers()
    assert all(validate_transfer(t) is TransferResult.OK for t in chain)
    assert all(t.user_data == CONTRACT_ID for t in chain)
    assert linked_flags(chain) == [True] * (len(chain) - 1) + [False]
    post, *rest = chain
    assert (post.amount, post.pending_id) == (amount, hold_id(sequence))
    again = [t for t in rest if t.flags & TransferFlags.PENDING]
    assert [(t.id, t.amount) for t in again] == (
        [(hold_id(sequence + 1), held - amount)] if held > amount else []
    )
    paid = {t.credit_account_id: t.amount for t in rest if t not in again}
    assert sum(paid.values()) == amount
    assert paid.get(PROVIDER, 0) == made.net_millicredits
    assert paid.get(REVENUE_ACCOUNT_ID, 0) == made.fee_millicredits


# --- the release --------------------------------------------------------------------


def test_the_release_voids_the_current_hold() -> None:
    assert release(2, 500) == [
        NewTransfer(
            id=f"metered:{CONTRACT_ID}:void:2",
            debit_account_id=BUYER,
            credit_account_id=ESCROW_ACCOUNT_ID,
            amount=500,
            ledger=LedgerId.CREDITS,
            code=TransferCode.ESCROW_REFUND,
            flags=TransferFlags.VOID_PENDING,
            pending_id=hold_id(2),
            user_data=CONTRACT_ID,
        )
    ]
    assert validate_transfer(release(2, 500)[0]) is TransferResult.OK


def test_nothing_held_has_nothing_to_release() -> None:
    assert release(3, 0) == []


# --- applied by the wallet's pure planner ------------------------------------------


def funded_ledger() -> MemoryLedger:
    return escrow_ledger.funded_ledger(FUNDS)


def balances(ledger: MemoryLedger) -> dict[str, tuple[int, int]]:
    """(available, held) of the buyer, provider, revenue and escrow accounts."""
    return {
        account_id: (ledger.accounts[account_id].available, ledger.accounts[account_id].held)
        for account_id in (BUYER, PROVIDER, REVENUE_ACCOUNT_ID, ESCROW_ACCOUNT_ID)
    }


def apply(ledger: MemoryLedger, chain: list[NewTransfer]) -> None:
    assert ledger.results(chain) == [TransferResult.OK] * len(chain)


def test_hold_capture_twice_release_leaves_each_account_exactly_its_share() -> None:
    ledger = funded_ledger()
    apply(ledger, hold())
    assert balances(ledger)[BUYER] == (FUNDS - CEILING, CEILING)
    apply(ledger, capture(0, CEILING, 300).transfers())
    assert balances(ledger) == {
        BUYER: (FUNDS - CEILING, 700),
        PROVIDER: (285, 0),
        REVENUE_ACCOUNT_ID: (15, 0),
        ESCROW_ACCOUNT_ID: (0, 0),
    }
    apply(ledger, capture(1, 700, 200).transfers())
    assert balances(ledger)[BUYER] == (FUNDS - CEILING, 500)
    apply(ledger, release(2, 500))
    assert balances(ledger) == {
        BUYER: (FUNDS - 500, 0),
        PROVIDER: (285 + 190, 0),
        REVENUE_ACCOUNT_ID: (15 + 10, 0),
        ESCROW_ACCOUNT_ID: (0, 0),
    }
    escrow = ledger.accounts[ESCROW_ACCOUNT_ID]
    assert escrow.credits_pending == 0 and escrow.debits_pending == 0
    assert escrow.credits_posted == escrow.debits_posted == 500
    statuses = {hold_id(n): ledger.holds[hold_id(n)].status for n in range(3)}
    assert statuses == {
        hold_id(0): PendingStatus.POSTED,
        hold_id(1): PendingStatus.POSTED,
        hold_id(2): PendingStatus.VOIDED,
    }
    assert ledger.stored_totals() == ledger.recomputed_totals()


def test_a_capture_of_the_whole_rest_leaves_nothing_to_release() -> None:
    ledger = funded_ledger()
    apply(ledger, hold())
    apply(ledger, capture(0, CEILING, 400).transfers())
    apply(ledger, capture(1, 600, 600).transfers())
    assert hold_id(2) not in ledger.holds
    assert release(2, 0) == []
    assert balances(ledger)[BUYER] == (FUNDS - CEILING, 0)
    assert balances(ledger)[ESCROW_ACCOUNT_ID] == (0, 0)


def test_a_retried_capture_is_replayed_and_pays_nothing_twice() -> None:
    ledger = funded_ledger()
    apply(ledger, hold())
    apply(ledger, capture(0, CEILING, 300).transfers())
    captured = balances(ledger)
    retried = ledger.submit(capture(0, CEILING, 300).transfers()).outcomes
    assert [(o.result, o.replayed) for o in retried] == [(TransferResult.OK, True)] * 4
    assert balances(ledger) == captured


def test_another_capture_of_a_hold_already_captured_is_refused() -> None:
    ledger = funded_ledger()
    apply(ledger, hold())
    apply(ledger, capture(0, CEILING, 300).transfers())
    captured = balances(ledger)
    # Two claims that both read hold 0 (the exchange locks the session, so this
    # is what a lost lock would look like): the second cannot capture again.
    again = ledger.results(capture(0, CEILING, 500).transfers())
    assert TransferResult.OK not in again
    assert balances(ledger) == captured


@settings(max_examples=60, deadline=None)
@given(
    ceiling=st.integers(min_value=1, max_value=10**9),
    fee_rate_bps=st.integers(min_value=0, max_value=10_000),
    shares=st.lists(st.floats(min_value=0, max_value=1), max_size=8),
)
def test_any_capture_sequence_conserves_the_ceiling(
    ceiling: int, fee_rate_bps: int, shares: list[float]
) -> None:
    ledger = funded_ledger()
    mint = NewTransfer("mint:more", ISSUANCE, BUYER, ceiling, LedgerId.CREDITS, TransferCode.MINT)
    apply(ledger, [mint])
    apply(ledger, hold(ceiling))
    sequence, held, fees, nets = 0, ceiling, 0, 0
    for share in shares:
        amount = int(held * share)
        if amount == 0:
            continue  # the exchange makes no capture of nothing
        made = capture(sequence, held, amount, fee_rate_bps=fee_rate_bps)
        apply(ledger, made.transfers())
        sequence, held = sequence + 1, held - amount
        fees, nets = fees + made.fee_millicredits, nets + made.net_millicredits
        assert ledger.accounts[BUYER].held == held
    apply(ledger, release(sequence, held))
    assert balances(ledger) == {
        BUYER: (FUNDS + ceiling - fees - nets, 0),
        PROVIDER: (nets, 0),
        REVENUE_ACCOUNT_ID: (fees, 0),
        ESCROW_ACCOUNT_ID: (0, 0),
    }
    escrow = ledger.accounts[ESCROW_ACCOUNT_ID]
    assert escrow.credits_pending == 0 and escrow.credits_posted == escrow.debits_posted
    assert ledger.stored_totals() == ledger.recomputed_totals()
