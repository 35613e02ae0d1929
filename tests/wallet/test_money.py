"""The fee function splits an amount exactly and never charges above the rate.

Worked examples pin the product plan's numbers; Hypothesis checks, over all
amounts and rates, that ``fee + net == amount``, ``0 <= fee <= amount``,
that the fee never exceeds the stated rate, and that it is the largest fee
that does not (rounding down by less than one unit).
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wallet import (
    MILLICREDITS_PER_CREDIT,
    MILLICREDITS_PER_USD_CENT,
    TRANSFER_AMOUNT_MAX,
    USD_CENTS_PER_CREDIT,
    FeeSchedule,
    fee_split,
)
from wallet.money import BASIS_POINTS_PER_WHOLE


@pytest.mark.parametrize(
    ("amount", "rate_bps", "expected"),
    [
        (100_000, 500, (5_000, 95_000)),  # 5 % escrow fee on 100 credits
        (100_000, 300, (3_000, 97_000)),
        (100_000, 1000, (10_000, 90_000)),
        (19, 500, (0, 19)),  # 0.95 rounds down to 0
        (20, 500, (1, 19)),
        (0, 500, (0, 0)),
        (12_345, 0, (0, 12_345)),
        (12_345, 10_000, (12_345, 0)),
    ],
)
def test_fee_split_matches_worked_examples(
    amount: int, rate_bps: int, expected: tuple[int, int]
) -> None:
    assert fee_split(amount, rate_bps=rate_bps) == expected


@given(
    amount=st.integers(min_value=0, max_value=TRANSFER_AMOUNT_MAX),
    rate_bps=st.integers(min_value=0, max_value=BASIS_POINTS_PER_WHOLE),
)
def test_fee_and_net_always_add_up_and_the_fee_never_exceeds_the_rate(
    amount: int, rate_bps: int
) -> None:
    fee, net = fee_split(amount, rate_bps=rate_bps)
    assert fee + net == amount
    assert 0 <= fee <= amount
    assert fee * BASIS_POINTS_PER_WHOLE <= amount * rate_bps
    # Rounded down by less than one unit: one more would exceed the rate.
    assert (fee + 1) * BASIS_POINTS_PER_WHOLE > amount * rate_bps


@pytest.mark.parametrize(("amount", "rate_bps"), [(-1, 500), (100, -1), (100, 10_001)])
def test_fee_split_refuses_a_negative_amount_or_a_rate_outside_zero_to_one_hundred_percent(
    amount: int, rate_bps: int
) -> None:
    with pytest.raises(AssertionError):
        fee_split(amount, rate_bps=rate_bps)


def test_fee_schedule_defaults_follow_the_product_plan() -> None:
    schedule = FeeSchedule()
    assert (schedule.purchase_bps, schedule.escrow_bps, schedule.cash_out_bps) == (300, 500, 1000)
    assert FeeSchedule(escrow_bps=250).escrow_bps == 250
    with pytest.raises(AssertionError):
        FeeSchedule(cash_out_bps=20_000)


def test_units_relate_one_credit_to_ten_cents_and_a_thousand_millicredits() -> None:
    assert MILLICREDITS_PER_CREDIT == 1000
    assert USD_CENTS_PER_CREDIT == 10
    assert MILLICREDITS_PER_USD_CENT * USD_CENTS_PER_CREDIT == MILLICREDITS_PER_CREDIT
