"""The portal's pure money rules: packages, fees, reversals, cash-out bounds, parsing.

Proves the product plan's numbers ($10 → 100 credits, $50 → 550, $100 →
1,200; 3 % purchase fee on top; 10 % cash-out fee; 100 credits minimum and
10,000 a month), that custom amounts are bounded, that parsing never goes
through floats and refuses signs and junk, and (with Hypothesis) that a
payment's reversals are cumulative: however its refund and dispute events
are repeated or reordered, the total clawed back plus owed is the credits'
share of the money reversed, never more than was minted.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from human_portal import limits
from human_portal.errors import InvalidInput, LimitExceeded
from human_portal.money_rules import (
    PACKAGES,
    cash_out_quote,
    format_cents,
    format_millicredits,
    parse_credits,
    parse_dollars,
    reversal_plan,
    top_up_quote,
)
from wallet import FeeSchedule

FEES = FeeSchedule()


def test_the_packages_are_the_product_plans():
    assert [(p.price_cents, p.credits) for p in PACKAGES] == [
        (1_000, 100),
        (5_000, 550),
        (10_000, 1_200),
    ]


@pytest.mark.parametrize(
    ("package", "fee_cents", "total_cents", "millicredits"),
    [
        ("starter", 30, 1_030, 100_000),
        ("builder", 150, 5_150, 550_000),
        ("fleet", 300, 10_300, 1_200_000),
    ],
)
def test_a_package_adds_the_three_percent_purchase_fee_on_top(
    package, fee_cents, total_cents, millicredits
):
    quote = top_up_quote(package, custom_cents=None, fees=FEES)
    assert (quote.fee_cents, quote.total_cents, quote.credits_millicredits) == (
        fee_cents,
        total_cents,
        millicredits,
    )


def test_a_custom_amount_buys_ten_credits_a_dollar_within_bounds():
    quote = top_up_quote("custom", custom_cents=2_550, fees=FEES)
    assert quote.credits_millicredits == 255_000
    assert quote.fee_cents == 76  # 3 % of $25.50 is 76.5 cents, rounded down
    for refused_cents in (
        limits.CUSTOM_TOPUP_CENTS_MIN - 1,
        limits.CUSTOM_TOPUP_CENTS_MAX + 1,
        0,
        -500,
    ):
        with pytest.raises(LimitExceeded):
            top_up_quote("custom", custom_cents=refused_cents, fees=FEES)
    with pytest.raises(InvalidInput):
        top_up_quote("custom", custom_cents=None, fees=FEES)
    with pytest.raises(InvalidInput):
        top_up_quote("platinum", custom_cents=None, fees=FEES)


def test_a_cash_out_pays_ten_cents_a_credit_less_ten_percent():
    quote = cash_out_quote(150, fees=FEES, cashed_out_this_month=0)
    assert (quote.gross_cents, quote.fee_cents, quote.net_cents) == (1_500, 150, 1_350)
    assert quote.millicredits == 150_000


def test_a_cash_out_is_at_least_100_and_at_most_10000_credits_a_month():
    with pytest.raises(LimitExceeded):
        cash_out_quote(99, fees=FEES, cashed_out_this_month=0)
    cash_out_quote(10_000, fees=FEES, cashed_out_this_month=0)
    with pytest.raises(LimitExceeded) as over:
        cash_out_quote(101, fees=FEES, cashed_out_this_month=9_900)
    assert over.value.limit == 10_000 and over.value.requested == 10_001
    with pytest.raises(LimitExceeded):
        cash_out_quote(10_001, fees=FEES, cashed_out_this_month=0)


@pytest.mark.parametrize(
    ("text", "millicredits"),
    [("12", 12_000), ("12.5", 12_500), ("0.001", 1), ("1,200", 1_200_000), (" 7.250 ", 7_250)],
)
def test_credits_parse_exactly(text, millicredits):
    assert parse_credits(text, field="amount") == millicredits


@pytest.mark.parametrize(
    "text", ["-5", "1e3", "1.0001", "", "abc", "0x10", "1.2.3", "9" * 13, "NaN"]
)
def test_credits_refuse_signs_exponents_and_junk(text):
    with pytest.raises(InvalidInput):
        parse_credits(text, field="amount")


@pytest.mark.parametrize(("text", "cents"), [("25", 2_500), ("25.5", 2_550), ("$0.07", 7)])
def test_dollars_parse_exactly(text, cents):
    assert parse_dollars(text, field="amount") == cents


@pytest.mark.parametrize("text", ["-1", "1.005", "", "1e2", "$-3"])
def test_dollars_refuse_junk(text):
    with pytest.raises(InvalidInput):
        parse_dollars(text, field="amount")


def test_amounts_format_without_floats():
    assert format_millicredits(1_200_000) == "1,200"
    assert format_millicredits(12_500) == "12.5"
    assert format_millicredits(-1) == "-0.001"
    assert format_cents(1_030) == "$10.30"


def test_a_full_refund_claws_back_every_credit_and_all_the_money():
    plan = reversal_plan(
        price_cents=1_000, fee_cents=30, credits_millicredits=100_000,
        refunded_cents=1_030, disputed_cents=0, reversed_cents=0, reversed_fee_cents=0,
        clawed_back_millicredits=0, receivable_millicredits=0, available_millicredits=100_000,
    )  # fmt: skip
    assert plan is not None
    assert (plan.clawback_millicredits, plan.receivable_millicredits) == (100_000, 0)
    assert (plan.delta_price_cents, plan.delta_fee_cents) == (1_000, 30)


def test_credits_already_spent_become_a_receivable():
    plan = reversal_plan(
        price_cents=1_000, fee_cents=30, credits_millicredits=100_000,
        refunded_cents=1_030, disputed_cents=0, reversed_cents=0, reversed_fee_cents=0,
        clawed_back_millicredits=0, receivable_millicredits=0, available_millicredits=40_000,
    )  # fmt: skip
    assert plan is not None
    assert (plan.clawback_millicredits, plan.receivable_millicredits) == (40_000, 60_000)


@settings(max_examples=300, deadline=None)
@given(
    package=st.sampled_from(["starter", "builder", "fleet"]),
    events=st.lists(st.integers(min_value=0, max_value=12_000), min_size=1, max_size=8),
    available=st.integers(min_value=0, max_value=2_000_000),
)
def test_reversals_are_cumulative_whatever_the_order_of_events(package, events, available):
    quote = top_up_quote(package, custom_cents=None, fees=FEES)
    state = dict(reversed_cents=0, reversed_fee_cents=0, clawed=0, owed=0, refunded=0)
    for refunded_total in events:
        # A refund event carries the charge's cumulative refunded amount; a
        # late one carries a smaller total than one already seen.
        state["refunded"] = max(state["refunded"], min(refunded_total, quote.total_cents))
        plan = reversal_plan(
            price_cents=quote.price_cents, fee_cents=quote.fee_cents,
            credits_millicredits=quote.credits_millicredits,
            refunded_cents=state["refunded"], disputed_cents=0,
            reversed_cents=state["reversed_cents"], reversed_fee_cents=state["reversed_fee_cents"],
            clawed_back_millicredits=state["clawed"], receivable_millicredits=state["owed"],
            available_millicredits=available,
        )  # fmt: skip
        if plan is None:
            continue
        assert plan.reversed_cents > state["reversed_cents"]
        available -= plan.clawback_millicredits
        state.update(
            reversed_cents=plan.reversed_cents,
            reversed_fee_cents=plan.reversed_fee_cents,
            clawed=state["clawed"] + plan.clawback_millicredits,
            owed=state["owed"] + plan.receivable_millicredits,
        )
    reversed_cents = min(state["refunded"], quote.total_cents)
    assert state["reversed_cents"] == reversed_cents
    price_share = reversed_cents - quote.fee_cents * reversed_cents // quote.total_cents
    expected = quote.credits_millicredits * price_share // quote.price_cents
    assert state["clawed"] + state["owed"] == expected <= quote.credits_millicredits
    assert available >= 0
