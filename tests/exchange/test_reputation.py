"""Ratings and reputation, earned only from settled contracts, over real NATS and a real ledger.

Proves on SQLite and PostgreSQL: a buyer rates a released contract once and
the provider's reputation (in ``catalog.reputation`` and in search results)
shows it; rating twice, before settlement, as the provider, as a stranger,
with stars outside 1..5 or an overlong comment is refused with its code and
changes nothing; refunds, disputes, on-time deliveries and unique buyers are
counted from settled contracts only (open ones do not count); a contract
released by its review window can be rated before the sweeper runs; two
racing ratings of one contract have one winner. Every test ends with the
invariants, which recount every reputation from contracts and ratings.
"""

from __future__ import annotations

import asyncio

import pytest

from agent_client import ExchangeError, OperatorClient, QuoteRequest
from exchange.use_cases.exchange_context import LifecycleSettings

PRICE = 2_000
GRANT = 100_000


async def upper(task):
    return {"text": task["text"].upper()}


async def never(task):
    await asyncio.Event().wait()


async def open_shop(exchange, capability="text.upper", *, handler=upper):
    provider = await exchange.agent()
    await provider.advertise(capability, description="Upper-cases text", price_millicredits=PRICE)
    await provider.serve(capability, handler, pricing=PRICE)
    return provider


async def hire(buyer, capability="text.upper"):
    quotes = await buyer.request_quotes(
        QuoteRequest(capability, "x", budget_millicredits=PRICE, quotes_max=1)
    )
    return await buyer.hire(quotes[0], {"text": "hi"})


async def released_contract(buyer, capability="text.upper"):
    contract = await hire(buyer, capability)
    await contract.accept_delivery(await contract.wait_delivery(timeout_s=10))
    return contract


async def error_code(call):
    with pytest.raises(ExchangeError) as caught:
        await call
    return caught.value.code


async def test_a_buyer_rates_a_released_contract_and_the_reputation_shows_it(exchange):
    provider = await open_shop(exchange)
    buyer = await exchange.funded_agent(GRANT)
    contract = await released_contract(buyer)

    rated = await contract.rate(4, "quick and correct")
    assert (rated.rating.stars, rated.rating.comment) == (4, "quick and correct")
    assert rated.rating.buyer_id == buyer.agent_id
    assert rated.reputation.rating_mean == 4.0

    reputation = await buyer.reputation(provider.agent_id)
    for record in (reputation.overall, reputation.capabilities[0]):
        assert record.settled_count == 1
        assert (record.on_time_rate, record.dispute_rate, record.refund_rate) == (1.0, 0.0, 0.0)
        assert (record.rating_mean, record.rating_count) == (4.0, 1)
        assert record.unique_buyer_count == 1
    assert reputation.overall.capability is None
    assert reputation.capabilities[0].capability == "text.upper"
    assert [entry.comment for entry in reputation.ratings] == ["quick and correct"]

    [listing] = (await buyer.search(capability="text.upper")).listings
    assert listing.reputation == reputation.capabilities[0]
    await exchange.check_invariants()


async def test_rating_twice_is_refused_and_keeps_the_first_rating(exchange):
    provider = await open_shop(exchange)
    buyer = await exchange.funded_agent(GRANT)
    contract = await released_contract(buyer)
    await buyer.rate(contract.contract_id, 5)
    assert await error_code(buyer.rate(contract.contract_id, 1)) == "already_rated"
    reputation = await buyer.reputation(provider.agent_id)
    assert (reputation.overall.rating_mean, reputation.overall.rating_count) == (5.0, 1)
    await exchange.check_invariants()


async def test_two_racing_ratings_of_one_contract_have_one_winner(exchange):
    provider = await open_shop(exchange)
    buyer = await exchange.funded_agent(GRANT)
    contract = await released_contract(buyer)
    results = await asyncio.gather(
        *(buyer.rate(contract.contract_id, stars) for stars in (1, 2, 3, 4, 5)),
        return_exceptions=True,
    )
    winners = [result for result in results if not isinstance(result, Exception)]
    assert len(winners) == 1
    assert {result.code for result in results if isinstance(result, ExchangeError)} == {
        "already_rated"
    }
    reputation = await buyer.reputation(provider.agent_id)
    assert reputation.overall.rating_mean == float(winners[0].rating.stars)
    await exchange.check_invariants()


async def test_rating_before_settlement_is_refused_while_open_and_while_delivered(exchange):
    await open_shop(exchange, "text.slow", handler=never)
    await open_shop(exchange)
    buyer = await exchange.funded_agent(GRANT)
    waiting = await hire(buyer, "text.slow")
    assert await error_code(buyer.rate(waiting.contract_id, 5)) == "not_settled"
    delivered = await hire(buyer)
    await delivered.wait_delivery(timeout_s=10)
    assert await error_code(buyer.rate(delivered.contract_id, 5)) == "not_settled"
    await exchange.check_invariants()


async def test_a_provider_cannot_rate_its_own_contract_and_a_stranger_cannot_find_it(exchange):
    provider = await open_shop(exchange)
    buyer = await exchange.funded_agent(GRANT)
    contract = await released_contract(buyer)
    assert await error_code(provider.rate(contract.contract_id, 5)) == "forbidden"
    stranger = await exchange.agent()
    assert await error_code(stranger.rate(contract.contract_id, 5)) == "not_found"
    assert await error_code(buyer.rate("c_" + "0" * 32, 5)) == "not_found"
    assert (await buyer.reputation(provider.agent_id)).overall.rating_count == 0
    await exchange.check_invariants()


@pytest.mark.parametrize(
    ("stars", "comment"),
    [(0, ""), (6, ""), (-1, ""), (5, "x" * 501)],
    ids=["zero-stars", "six-stars", "negative-stars", "comment-too-long"],
)
async def test_stars_outside_one_to_five_or_an_overlong_comment_are_malformed(
    exchange, stars, comment
):
    provider = await open_shop(exchange)
    buyer = await exchange.funded_agent(GRANT)
    contract = await released_contract(buyer)
    assert await error_code(buyer.rate(contract.contract_id, stars, comment)) == "malformed"
    assert (await buyer.reputation(provider.agent_id)).overall.rating_count == 0
    await exchange.check_invariants()


async def test_refunds_disputes_and_unique_buyers_count_from_settled_contracts_only(exchange):
    provider = await open_shop(exchange)
    operator = await exchange.agent(exchange.operator_keys)
    first_buyer = await exchange.funded_agent(GRANT)
    second_buyer = await exchange.funded_agent(GRANT)
    # Two releases by one buyer: one buyer, two settled contracts.
    await released_contract(first_buyer)
    await released_contract(first_buyer)
    # A refund: the provider cancels before delivering (never on time).
    await provider.serve("text.slow", never, pricing=PRICE)
    await provider.advertise("text.slow", description="slow", price_millicredits=PRICE)
    cancelled = await hire(second_buyer, "text.slow")
    await provider.cancel(cancelled.contract_id, reason="cannot do it")
    # A dispute, resolved by an operator.
    disputed = await hire(second_buyer)
    await disputed.wait_delivery(timeout_s=10)
    await second_buyer.reject_delivery(disputed.contract_id, reason="wrong")
    await OperatorClient(operator).resolve(disputed.contract_id, provider_share_bps=5_000)
    # Still open: counts nowhere yet.
    await hire(second_buyer, "text.slow")

    reputation = await operator.reputation(provider.agent_id)
    by_capability = {record.capability: record for record in reputation.capabilities}
    upper_record, slow_record = by_capability["text.upper"], by_capability["text.slow"]
    assert upper_record.settled_count == 3
    assert (upper_record.dispute_rate, upper_record.refund_rate) == (1 / 3, 0.0)
    assert upper_record.on_time_rate == 1.0
    assert upper_record.unique_buyer_count == 2
    assert slow_record.settled_count == 1
    assert (slow_record.refund_rate, slow_record.on_time_rate) == (1.0, 0.0)
    overall = reputation.overall
    assert overall.settled_count == 4
    assert (overall.refund_rate, overall.dispute_rate, overall.on_time_rate) == (0.25, 0.25, 0.75)
    assert overall.unique_buyer_count == 2
    assert overall.rating_mean is None
    # One capability only, when asked.
    only_slow = await operator.reputation(provider.agent_id, capability="text.slow")
    assert [record.capability for record in only_slow.capabilities] == ["text.slow"]
    await exchange.check_invariants()


async def test_a_contract_released_by_its_review_window_can_be_rated_before_the_sweep(exchange):
    await exchange.put_timers_to_sleep(lifecycle=LifecycleSettings(review_window_s=1))
    provider = await open_shop(exchange)
    buyer = await exchange.funded_agent(GRANT)
    contract = await hire(buyer)
    await contract.wait_delivery(timeout_s=10)
    await asyncio.sleep(1.2)
    rated = await buyer.rate(contract.contract_id, 3)
    assert rated.reputation.settled_count == 1
    assert (await buyer.contract(contract.contract_id)).state == "released"
    assert (await buyer.reputation(provider.agent_id)).overall.rating_mean == 3.0
    await exchange.check_invariants()


async def test_the_reputation_of_a_provider_without_listings_is_not_found(exchange):
    asker = await exchange.agent()
    nobody = await exchange.agent()
    assert await error_code(asker.reputation(nobody.agent_id)) == "not_found"
