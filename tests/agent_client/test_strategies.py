"""Negotiation strategies and quote ranking decide correctly, whatever the numbers.

Pure tests (no NATS, no keys): the ready strategies are driven with
Hypothesis over prices, steps, budgets and rounds to prove their promises
(a provider never quotes below its floor, a buyer never accepts or counters
above its budget, nobody negotiates past the round limit), a simulated
negotiation between the two ends within the limit with a price both accept,
and the default ranking orders quotes by price, promised delivery time and
reputation, deterministically.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent_client import limits
from agent_client.offers import ReceivedQuote
from agent_client.protocol import Envelope, Header, Quote, Rfq
from agent_client.strategies import (
    Accept,
    BuyerSituation,
    ConcedingProvider,
    CounterOffer,
    CounterSituation,
    Propose,
    TargetPriceBuyer,
    WalkAway,
    WeightedRanking,
    rank_quotes,
)

ROUNDS_MAX = limits.NEGOTIATION_ROUNDS_MAX
NOW_MS = 1_800_000_000_000
prices = st.integers(min_value=1, max_value=10**9)
rounds = st.integers(min_value=1, max_value=ROUNDS_MAX)


def counter_situation(*, offered, countered, round_=1, budget=10**9):
    return CounterSituation(
        buyer_id="U" + "B" * 55,
        capability="text.upper",
        round=round_,
        offered_millicredits=offered,
        countered_millicredits=countered,
        budget_millicredits=budget,
    )


def offer(price, *, round_=0):
    return BuyerSituation(
        provider_id="U" + "P" * 55,
        price_millicredits=price,
        delivery_deadline_ms=NOW_MS + 60_000,
        round=round_,
    )


# --- the provider ----------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(floor=prices, step=prices, offered=prices, countered=prices, round_=rounds)
def test_the_conceding_provider_never_goes_below_its_floor(floor, step, offered, countered, round_):
    strategy = ConcedingProvider(floor_millicredits=floor, step_millicredits=step)
    move = strategy.answer(counter_situation(offered=offered, countered=countered, round_=round_))
    assert isinstance(move, Propose)
    assert move.price_millicredits >= floor
    if offered >= floor:
        # It only ever comes down, and never by more than the step.
        assert offered - step <= move.price_millicredits <= offered


@given(floor=prices, list_price=prices, budget=prices)
def test_the_conceding_provider_opens_within_the_budget_or_declines(floor, list_price, budget):
    strategy = ConcedingProvider(floor_millicredits=floor, step_millicredits=1)
    opening = strategy.opening_price(list_price, budget)
    if floor > budget:
        assert opening is None
    else:
        assert opening is not None and floor <= opening <= budget
        assert opening == max(floor, min(list_price, budget))


def test_the_conceding_provider_concedes_one_step_toward_the_buyer():
    strategy = ConcedingProvider(floor_millicredits=1_500, step_millicredits=200)
    assert strategy.answer(counter_situation(offered=2_000, countered=1_000)) == Propose(1_800)
    assert strategy.answer(counter_situation(offered=2_000, countered=1_900)) == Propose(1_900)
    assert strategy.answer(counter_situation(offered=1_600, countered=1_000)) == Propose(1_500)
    # A buyer offering more than asked just gets the asking price again.
    assert strategy.answer(counter_situation(offered=2_000, countered=2_500)) == Propose(2_000)


def test_the_conceding_provider_walks_away_after_its_round_limit():
    strategy = ConcedingProvider(floor_millicredits=100, step_millicredits=10, rounds_max=2)
    assert isinstance(
        strategy.answer(counter_situation(offered=500, countered=1, round_=2)), Propose
    )
    move = strategy.answer(counter_situation(offered=500, countered=1, round_=3))
    assert isinstance(move, WalkAway)
    assert move.code == "rounds_exhausted"


@pytest.mark.parametrize(
    "arguments",
    [
        {"floor_millicredits": 0, "step_millicredits": 1},
        {"floor_millicredits": 1, "step_millicredits": -1},
        {"floor_millicredits": 1, "step_millicredits": 1, "rounds_max": ROUNDS_MAX + 1},
    ],
)
def test_the_conceding_provider_refuses_nonsense_parameters(arguments):
    with pytest.raises(ValueError):
        ConcedingProvider(**arguments)


# --- the buyer ---------------------------------------------------------------------


@st.composite
def target_and_budget(draw):
    budget = draw(prices)
    return draw(st.integers(min_value=1, max_value=budget)), budget


@settings(max_examples=300, deadline=None)
@given(
    target_budget=target_and_budget(),
    price=prices,
    round_=st.integers(min_value=0, max_value=ROUNDS_MAX),
    rounds_max=st.integers(min_value=0, max_value=ROUNDS_MAX),
)
def test_the_target_price_buyer_never_exceeds_its_budget_or_the_rounds(
    target_budget, price, round_, rounds_max
):
    target, budget = target_budget
    strategy = TargetPriceBuyer(
        target_millicredits=target, budget_millicredits=budget, rounds_max=rounds_max
    )
    move = strategy.decide(offer(price, round_=round_))
    if isinstance(move, Accept):
        assert price <= budget
    elif isinstance(move, CounterOffer):
        assert round_ < rounds_max
        assert target <= move.price_millicredits < price
        assert move.price_millicredits <= budget
    else:
        assert price > budget
    if price <= target:
        assert move == Accept()


def test_the_target_price_buyer_counters_in_equal_steps_from_target_toward_budget():
    strategy = TargetPriceBuyer(target_millicredits=1_000, budget_millicredits=2_000, rounds_max=4)
    counters = [strategy.decide(offer(5_000, round_=round_)) for round_ in range(4)]
    assert counters == [
        CounterOffer(1_000),
        CounterOffer(1_250),
        CounterOffer(1_500),
        CounterOffer(1_750),
    ]
    # The rounds are spent: take it if affordable, else walk away.
    assert strategy.decide(offer(2_000, round_=4)) == Accept()
    assert isinstance(strategy.decide(offer(2_001, round_=4)), WalkAway)


def test_the_target_price_buyer_refuses_a_target_above_its_budget():
    with pytest.raises(ValueError):
        TargetPriceBuyer(target_millicredits=2, budget_millicredits=1)


@settings(max_examples=300, deadline=None)
@given(
    target_budget=target_and_budget(),
    floor=prices,
    step=prices,
    opening=prices,
    buyer_rounds=st.integers(min_value=0, max_value=ROUNDS_MAX),
    provider_rounds=st.integers(min_value=0, max_value=ROUNDS_MAX),
)
def test_a_simulated_negotiation_ends_within_the_limit_at_a_price_both_accept(
    target_budget, floor, step, opening, buyer_rounds, provider_rounds
):
    target, budget = target_budget
    buyer = TargetPriceBuyer(
        target_millicredits=target, budget_millicredits=budget, rounds_max=buyer_rounds
    )
    provider = ConcedingProvider(
        floor_millicredits=floor, step_millicredits=step, rounds_max=provider_rounds
    )
    price = provider.opening_price(opening, budget)
    if price is None:
        assert floor > budget
        return
    round_ = 0
    outcome = None
    while outcome is None:
        move = buyer.decide(offer(price, round_=round_))
        if not isinstance(move, CounterOffer):
            outcome = move
            break
        round_ += 1
        assert round_ <= ROUNDS_MAX
        answer = provider.answer(
            counter_situation(
                offered=price, countered=move.price_millicredits, round_=round_, budget=budget
            )
        )
        if isinstance(answer, WalkAway):
            outcome = answer
            break
        price = answer.price_millicredits
    assert round_ <= min(buyer_rounds, ROUNDS_MAX)
    if isinstance(outcome, Accept):
        assert floor <= price <= budget
    # The opening price is within the budget and concessions only lower it,
    # so the buyer never has to walk away from this provider.
    assert not (isinstance(outcome, WalkAway) and outcome.code == "walked_away")


# --- ranking ------------------------------------------------------------------------


def rfq(*, budget=10_000, within_s=60):
    return Rfq(
        header=Header(
            issuer="U" + "B" * 55,
            audience="providers",
            subject="agentx.v2.rfq.text.upper",
            issued_at_ms=NOW_MS,
            expires_at_ms=NOW_MS + 1_000,
            nonce="n" * 22,
        ),
        rfq_id="rfq-1",
        capability="text.upper",
        task_summary="x",
        budget_millicredits=budget,
        delivery_within_s=within_s,
    )


def received(provider_letter, price, *, delivery_s=60):
    quote = Quote(
        header=Header(
            issuer="U" + provider_letter * 55,
            audience="U" + "B" * 55,
            subject="agentx.v2.rfq.text.upper",
            issued_at_ms=NOW_MS,
            expires_at_ms=NOW_MS + 60_000,
            nonce="n" * 22,
        ),
        rfq_id="rfq-1",
        capability="text.upper",
        price_millicredits=price,
        delivery_deadline_ms=NOW_MS + delivery_s * 1000,
    )
    return ReceivedQuote(quote, Envelope(doc="", sig=""))


def letters(quotes):
    return [quote.provider_id[1] for quote in quotes]


def test_the_default_ranking_puts_the_cheapest_first_when_delivery_is_equal():
    quotes = [received("A", 3_000), received("C", 1_000), received("D", 2_000)]
    assert letters(rank_quotes(quotes, rfq=rfq(), reputation=None)) == ["C", "D", "A"]


def test_the_default_ranking_prefers_much_sooner_delivery_at_a_slightly_higher_price():
    slow_cheap = received("A", 1_000, delivery_s=60)
    fast = received("C", 1_100, delivery_s=6)
    assert letters(rank_quotes([slow_cheap, fast], rfq=rfq(), reputation=None)) == ["C", "A"]


def test_reputation_counts_only_when_given_and_unknown_providers_are_neutral():
    quotes = [received("A", 1_000), received("C", 1_100)]
    assert letters(rank_quotes(quotes, rfq=rfq(), reputation=None)) == ["A", "C"]
    trusted_c = {"U" + "A" * 55: 0.0, "U" + "C" * 55: 1.0}
    assert letters(rank_quotes(quotes, rfq=rfq(), reputation=trusted_c)) == ["C", "A"]
    # A provider the mapping does not know sits at 0.5: above a bad one, below a good one.
    unknown_a = {"U" + "C" * 55: 0.0}
    assert letters(rank_quotes(quotes, rfq=rfq(), reputation=unknown_a)) == ["A", "C"]
    scores_out_of_range = {"U" + "A" * 55: -5.0, "U" + "C" * 55: 7.0}
    assert letters(rank_quotes(quotes, rfq=rfq(), reputation=scores_out_of_range)) == ["C", "A"]


def test_ties_are_broken_deterministically_by_provider_id():
    quotes = [received("D", 1_000), received("A", 1_000), received("C", 1_000)]
    assert letters(rank_quotes(quotes, rfq=rfq(), reputation=None)) == ["A", "C", "D"]


def test_a_ranking_with_only_price_weight_is_plain_cheapest_first():
    price_only = WeightedRanking(delivery_weight=0, reputation_weight=0)
    quotes = [received("A", 1_100, delivery_s=1), received("C", 1_000, delivery_s=60)]
    assert letters(price_only(quotes, rfq=rfq(), reputation={"U" + "A" * 55: 1.0})) == ["C", "A"]
