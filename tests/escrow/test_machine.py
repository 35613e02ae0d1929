"""The escrow's pure core settles a held price exactly and plans retry-safe transfers.

Proves, on plain values, that ``settlement_for`` and ``provider_share_for_bps``
give worked amounts for all, nothing and a split (rounding down at 0, 1, odd
and maximal prices, the odd unit of a split going back to the buyer), that a
``Settlement`` refuses numbers that do not add up, and, with Hypothesis over
every price a quote may carry, that ``net + fee + refund == price``. The
transfer plans are pinned field by field: their ids derive from the contract
id alone, so a retried step is the identical ledger request, every transfer
passes the wallet's own validation, and a settle chain is closed (linked up
to its last member). Finally the plans are applied by the wallet's pure
planner (``tests.wallet.memory_ledger``), which shows the balances each
settlement leaves and that a retried settlement is replayed, not paid twice.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent_client.limits import PRICE_MILLICREDITS_MAX
from escrow import (
    ESCROW_ACCOUNT_ID,
    REVENUE_ACCOUNT_ID,
    Settlement,
    provider_share_for_bps,
    settlement_for,
)
from escrow.machine import hold_transfers, settle_transfers
from tests.escrow import escrow_ledger
from tests.escrow.escrow_ledger import BUYER, PROVIDER
from tests.wallet.memory_ledger import MemoryLedger
from wallet import (
    LedgerId,
    NewTransfer,
    TransferCode,
    TransferFlags,
    TransferResult,
)
from wallet.validation import validate_transfer

# Shaped like the exchange's contract ids ("c_" and 32 hex digits).
CONTRACT_ID = "c_" + "5e" * 16
OTHER_CONTRACT_ID = "c_" + "a7" * 16
ESCROW_FEE_BPS = 500  # the product plan's 5 %
HOLD_ID = f"escrow:{CONTRACT_ID}:hold"


def settle(price: int, *, share_bps: int, fee_rate_bps: int = ESCROW_FEE_BPS) -> Settlement:
    """The settlement the exchange computes for a share given in basis points."""
    share = provider_share_for_bps(price, provider_share_bps=share_bps)
    return settlement_for(price, provider_share_millicredits=share, fee_rate_bps=fee_rate_bps)


def settle_chain(settlement: Settlement, contract_id: str = CONTRACT_ID) -> list[NewTransfer]:
    return settle_transfers(
        contract_id,
        buyer_account_id=BUYER,
        provider_account_id=PROVIDER,
        settlement=settlement,
    )


# --- settlements -------------------------------------------------------------------


def test_a_full_share_releases_the_price_less_the_fee_to_the_provider() -> None:
    settlement = settle(100_000, share_bps=10_000)
    assert settlement == Settlement(100_000, 100_000, 5_000, 95_000, 0)
    assert settlement.kind == "released"


def test_no_share_refunds_the_whole_price_and_charges_no_fee() -> None:
    settlement = settle(100_000, share_bps=0)
    assert settlement == Settlement(100_000, 0, 0, 0, 100_000)
    assert settlement.kind == "refunded"


def test_a_split_charges_the_fee_on_the_providers_share_only() -> None:
    settlement = settle(100_000, share_bps=6_000)
    assert settlement == Settlement(100_000, 60_000, 3_000, 57_000, 40_000)
    assert settlement.kind == "split"


@pytest.mark.parametrize(
    ("price", "share_bps", "fee_rate_bps", "expected"),
    [
        # One millicredit: a full share is too small to carry a fee.
        (1, 10_000, ESCROW_FEE_BPS, Settlement(1, 1, 0, 1, 0)),
        # Half of one millicredit rounds down to nothing: the buyer keeps it.
        (1, 5_000, ESCROW_FEE_BPS, Settlement(1, 0, 0, 0, 1)),
        (1, 9_999, ESCROW_FEE_BPS, Settlement(1, 0, 0, 0, 1)),
        # 5 % of 19 is 0.95 and of 21 is 1.05: both round down.
        (19, 10_000, ESCROW_FEE_BPS, Settlement(19, 19, 0, 19, 0)),
        (20, 10_000, ESCROW_FEE_BPS, Settlement(20, 20, 1, 19, 0)),
        (21, 10_000, ESCROW_FEE_BPS, Settlement(21, 21, 1, 20, 0)),
        # An odd price split evenly: the provider's half rounds down, so the
        # odd millicredit goes back to the buyer (6172.5 -> 6172, fee 308.6 -> 308).
        (12_345, 5_000, ESCROW_FEE_BPS, Settlement(12_345, 6_172, 308, 5_864, 6_173)),
        (3, 5_000, ESCROW_FEE_BPS, Settlement(3, 1, 0, 1, 2)),
        # The extreme rates: no fee, and a fee of the whole share.
        (12_345, 10_000, 0, Settlement(12_345, 12_345, 0, 12_345, 0)),
        (12_345, 5_000, 10_000, Settlement(12_345, 6_172, 6_172, 0, 6_173)),
        # The largest price a quote may carry.
        (
            PRICE_MILLICREDITS_MAX,
            10_000,
            ESCROW_FEE_BPS,
            Settlement(10**12, 10**12, 5 * 10**10, 95 * 10**10, 0),
        ),
        (
            PRICE_MILLICREDITS_MAX,
            5_000,
            ESCROW_FEE_BPS,
            Settlement(10**12, 5 * 10**11, 25 * 10**9, 475 * 10**9, 5 * 10**11),
        ),
        (
            PRICE_MILLICREDITS_MAX,
            1,
            ESCROW_FEE_BPS,
            Settlement(10**12, 10**8, 5 * 10**6, 95 * 10**6, 10**12 - 10**8),
        ),
    ],
)
def test_settlements_round_down_at_edge_amounts(
    price: int, share_bps: int, fee_rate_bps: int, expected: Settlement
) -> None:
    assert settle(price, share_bps=share_bps, fee_rate_bps=fee_rate_bps) == expected


def test_a_zero_price_settles_to_all_zeros() -> None:
    # A quote's price is at least 1; the math still holds at 0.
    assert settlement_for(0, provider_share_millicredits=0, fee_rate_bps=ESCROW_FEE_BPS) == (
        Settlement(0, 0, 0, 0, 0)
    )


@pytest.mark.parametrize(
    ("price", "share_bps", "expected_share"),
    [
        (100_000, 0, 0),
        (100_000, 10_000, 100_000),
        (100_000, 5_000, 50_000),
        (100_000, 1, 10),
        (1, 5_000, 0),
        (1, 10_000, 1),
        (3, 3_333, 0),
        (3, 3_334, 1),
        (12_345, 5_000, 6_172),
        (PRICE_MILLICREDITS_MAX, 9_999, 999_900_000_000),
    ],
)
def test_a_share_in_basis_points_rounds_down(
    price: int, share_bps: int, expected_share: int
) -> None:
    assert provider_share_for_bps(price, provider_share_bps=share_bps) == expected_share


@pytest.mark.parametrize("share_bps", [-1, 10_001])
def test_a_share_outside_zero_to_one_hundred_percent_is_a_programmer_error(share_bps: int) -> None:
    with pytest.raises(AssertionError):
        provider_share_for_bps(100_000, provider_share_bps=share_bps)


@pytest.mark.parametrize(
    ("price", "share", "fee_rate_bps"),
    [(100, 101, ESCROW_FEE_BPS), (100, -1, ESCROW_FEE_BPS), (100, 100, 10_001)],
)
def test_settlement_for_refuses_a_share_over_the_price_or_a_rate_over_one_hundred_percent(
    price: int, share: int, fee_rate_bps: int
) -> None:
    with pytest.raises(AssertionError):
        settlement_for(price, provider_share_millicredits=share, fee_rate_bps=fee_rate_bps)


@pytest.mark.parametrize(
    "fields",
    [
        (100, 101, 0, 101, -1),  # a share over the price
        (100, 50, -1, 51, 50),  # a negative fee
        (100, 50, 5, 44, 50),  # fee + net short of the share
        (100, 50, 5, 45, 49),  # share + refund short of the price
        (100, 50, 5, 45, 51),  # share + refund over the price
    ],
)
def test_a_settlement_whose_parts_do_not_add_up_cannot_exist(
    fields: tuple[int, int, int, int, int],
) -> None:
    with pytest.raises(AssertionError):
        Settlement(*fields)


@given(
    price=st.integers(min_value=1, max_value=PRICE_MILLICREDITS_MAX),
    share_bps=st.integers(min_value=0, max_value=10_000),
    fee_rate_bps=st.integers(min_value=0, max_value=10_000),
)
def test_every_settlement_conserves_the_price(
    price: int, share_bps: int, fee_rate_bps: int
) -> None:
    settlement = settle(price, share_bps=share_bps, fee_rate_bps=fee_rate_bps)
    share = settlement.provider_share_millicredits
    assert (
        settlement.net_millicredits + settlement.fee_millicredits + settlement.refunded_millicredits
        == price
    )
    # The share never exceeds the basis points asked for, by less than one unit.
    assert share * 10_000 <= price * share_bps < (share + 1) * 10_000
    assert settlement.fee_millicredits == share * fee_rate_bps // 10_000
    expected_outcome = "released" if share == price else "refunded" if share == 0 else "split"
    assert settlement.kind == expected_outcome


# --- the hold ----------------------------------------------------------------------


def test_a_hold_is_one_pending_transfer_from_the_buyer_to_escrow() -> None:
    assert hold_transfers(CONTRACT_ID, buyer_account_id=BUYER, price_millicredits=12_345) == [
        NewTransfer(
            id=HOLD_ID,
            debit_account_id=BUYER,
            credit_account_id=ESCROW_ACCOUNT_ID,
            amount=12_345,
            ledger=LedgerId.CREDITS,
            code=TransferCode.ESCROW_LOCK,
            flags=TransferFlags.PENDING,
            pending_id=None,
            timeout_s=0,
            user_data=CONTRACT_ID,
        )
    ]


def test_a_retried_hold_is_the_identical_request_and_another_contract_gets_another_id() -> None:
    first = hold_transfers(CONTRACT_ID, buyer_account_id=BUYER, price_millicredits=500)
    retried = hold_transfers(CONTRACT_ID, buyer_account_id=BUYER, price_millicredits=500)
    other = hold_transfers(OTHER_CONTRACT_ID, buyer_account_id=BUYER, price_millicredits=500)
    assert first == retried
    assert first[0].id != other[0].id


@pytest.mark.parametrize("price", [0, -1])
def test_a_hold_of_nothing_is_a_programmer_error(price: int) -> None:
    with pytest.raises(AssertionError):
        hold_transfers(CONTRACT_ID, buyer_account_id=BUYER, price_millicredits=price)


@pytest.mark.parametrize("price", [1, PRICE_MILLICREDITS_MAX])
def test_a_hold_passes_the_wallets_validation_at_the_smallest_and_largest_price(
    price: int,
) -> None:
    (hold,) = hold_transfers(CONTRACT_ID, buyer_account_id=BUYER, price_millicredits=price)
    assert validate_transfer(hold) is TransferResult.OK


# --- the settle chain --------------------------------------------------------------


def test_a_release_posts_the_hold_then_pays_net_and_fee_in_one_linked_chain() -> None:
    chain = settle_chain(settle(100_000, share_bps=10_000))
    assert chain == [
        NewTransfer(
            id=f"escrow:{CONTRACT_ID}:post",
            debit_account_id=BUYER,
            credit_account_id=ESCROW_ACCOUNT_ID,
            amount=100_000,
            ledger=LedgerId.CREDITS,
            code=TransferCode.ESCROW_RELEASE,
            flags=TransferFlags.POST_PENDING | TransferFlags.LINKED,
            pending_id=HOLD_ID,
            user_data=CONTRACT_ID,
        ),
        NewTransfer(
            id=f"escrow:{CONTRACT_ID}:net",
            debit_account_id=ESCROW_ACCOUNT_ID,
            credit_account_id=PROVIDER,
            amount=95_000,
            ledger=LedgerId.CREDITS,
            code=TransferCode.ESCROW_RELEASE,
            flags=TransferFlags.LINKED,
            user_data=CONTRACT_ID,
        ),
        NewTransfer(
            id=f"escrow:{CONTRACT_ID}:fee",
            debit_account_id=ESCROW_ACCOUNT_ID,
            credit_account_id=REVENUE_ACCOUNT_ID,
            amount=5_000,
            ledger=LedgerId.CREDITS,
            code=TransferCode.FEE,
            flags=TransferFlags.NONE,
            user_data=CONTRACT_ID,
        ),
    ]


def test_a_split_posts_only_the_providers_share_of_the_hold() -> None:
    post, net, fee = settle_chain(settle(12_345, share_bps=5_000))
    assert (post.amount, net.amount, fee.amount) == (6_172, 5_864, 308)
    assert post.pending_id == HOLD_ID


def test_a_refund_voids_the_hold_for_the_whole_price() -> None:
    assert settle_chain(settle(100_000, share_bps=0)) == [
        NewTransfer(
            id=f"escrow:{CONTRACT_ID}:void",
            debit_account_id=BUYER,
            credit_account_id=ESCROW_ACCOUNT_ID,
            amount=100_000,
            ledger=LedgerId.CREDITS,
            code=TransferCode.ESCROW_REFUND,
            flags=TransferFlags.VOID_PENDING,
            pending_id=HOLD_ID,
            user_data=CONTRACT_ID,
        )
    ]


@pytest.mark.parametrize(
    ("settlement", "expected"),
    [
        # No fee (too small, or a zero rate): the net closes the chain.
        (settle(19, share_bps=10_000), [("post", 19), ("net", 19)]),
        (settle(100_000, share_bps=10_000, fee_rate_bps=0), [("post", 100_000), ("net", 100_000)]),
        # The whole share is fee: there is no net transfer.
        (
            settle(100_000, share_bps=10_000, fee_rate_bps=10_000),
            [("post", 100_000), ("fee", 100_000)],
        ),
        # A share of one millicredit still posts.
        (settle(100_000, share_bps=1, fee_rate_bps=ESCROW_FEE_BPS), [("post", 10), ("net", 10)]),
        (settle(1, share_bps=10_000), [("post", 1), ("net", 1)]),
    ],
)
def test_a_zero_leg_has_no_transfer_and_the_chain_stays_closed(
    settlement: Settlement, expected: list[tuple[str, int]]
) -> None:
    chain = settle_chain(settlement)
    assert [(t.id.rsplit(":", 1)[1], t.amount) for t in chain] == expected
    assert [bool(t.flags & TransferFlags.LINKED) for t in chain] == [True, False]


def test_a_retried_settlement_is_the_identical_chain_and_ids_follow_the_contract() -> None:
    settlement = settle(12_345, share_bps=5_000)
    assert settle_chain(settlement) == settle_chain(settlement)
    ours = {t.id for t in settle_chain(settlement)}
    theirs = {t.id for t in settle_chain(settlement, OTHER_CONTRACT_ID)}
    assert ours == {f"escrow:{CONTRACT_ID}:{step}" for step in ("post", "net", "fee")}
    assert not ours & theirs
    # A different outcome for the same contract reuses the same ids, so the
    # ledger would refuse it (different fields) rather than pay twice.
    assert {t.id for t in settle_chain(settle(12_345, share_bps=10_000))} == ours


@given(
    price=st.integers(min_value=1, max_value=PRICE_MILLICREDITS_MAX),
    share_bps=st.integers(min_value=0, max_value=10_000),
    fee_rate_bps=st.integers(min_value=0, max_value=10_000),
)
def test_every_settle_chain_is_valid_closed_and_moves_exactly_the_settlement(
    price: int, share_bps: int, fee_rate_bps: int
) -> None:
    settlement = settle(price, share_bps=share_bps, fee_rate_bps=fee_rate_bps)
    chain = settle_chain(settlement)
    assert all(validate_transfer(t) is TransferResult.OK for t in chain)
    assert all(t.user_data == CONTRACT_ID for t in chain)
    assert [bool(t.flags & TransferFlags.LINKED) for t in chain] == [True] * (len(chain) - 1) + [
        False
    ]
    if settlement.provider_share_millicredits == 0:
        assert [(t.flags, t.amount) for t in chain] == [(TransferFlags.VOID_PENDING, price)]
        return
    post, *payouts = chain
    assert post.amount == settlement.provider_share_millicredits
    assert sum(t.amount for t in payouts) == post.amount
    paid = {t.credit_account_id: t.amount for t in payouts}
    assert paid.get(PROVIDER, 0) == settlement.net_millicredits
    assert paid.get(REVENUE_ACCOUNT_ID, 0) == settlement.fee_millicredits


# --- applied by the wallet's pure planner ------------------------------------------

FUNDS = 1_000_000


def funded_ledger() -> MemoryLedger:
    return escrow_ledger.funded_ledger(FUNDS)


def available(ledger: MemoryLedger) -> dict[str, int]:
    return {
        account_id: ledger.accounts[account_id].available
        for account_id in (BUYER, PROVIDER, REVENUE_ACCOUNT_ID, ESCROW_ACCOUNT_ID)
    }


@pytest.mark.parametrize(
    ("share_bps", "expected"),
    [
        (10_000, {BUYER: FUNDS - 12_345, PROVIDER: 11_728, REVENUE_ACCOUNT_ID: 617}),
        (5_000, {BUYER: FUNDS - 6_172, PROVIDER: 5_864, REVENUE_ACCOUNT_ID: 308}),
        (0, {BUYER: FUNDS, PROVIDER: 0, REVENUE_ACCOUNT_ID: 0}),
    ],
)
def test_hold_then_settle_leaves_each_account_what_the_settlement_says(
    share_bps: int, expected: dict[str, int]
) -> None:
    ledger = funded_ledger()
    hold = hold_transfers(CONTRACT_ID, buyer_account_id=BUYER, price_millicredits=12_345)
    assert ledger.results(hold) == [TransferResult.OK]
    assert ledger.accounts[BUYER].held == 12_345
    chain = settle_chain(settle(12_345, share_bps=share_bps))
    assert ledger.results(chain) == [TransferResult.OK] * len(chain)
    assert available(ledger) == {**expected, ESCROW_ACCOUNT_ID: 0}
    assert ledger.accounts[BUYER].held == 0
    assert ledger.stored_totals() == ledger.recomputed_totals()


def test_a_retried_settlement_is_replayed_and_pays_nothing_twice() -> None:
    ledger = funded_ledger()
    ledger.submit(hold_transfers(CONTRACT_ID, buyer_account_id=BUYER, price_millicredits=12_345))
    chain = settle_chain(settle(12_345, share_bps=5_000))
    ledger.submit(chain)
    settled = available(ledger)
    retried = ledger.submit(settle_chain(settle(12_345, share_bps=5_000))).outcomes
    assert [(o.result, o.replayed) for o in retried] == [(TransferResult.OK, True)] * 3
    assert available(ledger) == settled


def test_a_second_different_settlement_of_one_contract_is_refused() -> None:
    ledger = funded_ledger()
    ledger.submit(hold_transfers(CONTRACT_ID, buyer_account_id=BUYER, price_millicredits=12_345))
    ledger.submit(settle_chain(settle(12_345, share_bps=5_000)))
    settled = available(ledger)
    again = ledger.results(settle_chain(settle(12_345, share_bps=10_000)))
    assert TransferResult.OK not in again
    assert available(ledger) == settled
