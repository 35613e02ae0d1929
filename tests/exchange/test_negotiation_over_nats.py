"""Negotiation between real agents over a real nats-server, settled at the exchange.

Proves, on SQLite and PostgreSQL: a negotiation with counter-offers ends in
a deal at the conceded price, which opens, delivers and settles with the
fee on that price; declines (of an RFQ, of a counter-offer) reach the buyer
with their code and reason; a counter-offer to an expired quote, or one
that expired itself, is declined with a typed error; either side can walk
away; and the exchange refuses a superseded offer (one the buyer's own
counter-offer rejected, or any other offer of a negotiation that already
opened a contract), an inconsistent history, and a second contract from
parallel acceptances of one negotiation. Money tests end with the ledger
invariants.
"""

from __future__ import annotations

import asyncio

import msgspec
import pytest

from agent_client import (
    ConcedingProvider,
    DeclineCode,
    ExchangeError,
    NegotiationError,
    NoDeal,
    OfferDeclined,
    QuoteRequest,
    TargetPriceBuyer,
    subjects,
)
from agent_client.protocol import (
    Counter,
    Decline,
    ErrorReply,
    OpenContract,
    json_encoder,
)
from agent_client.signing import SystemClock, make_header, open_envelope, seal
from agent_client.strategies import WalkAway

GRANT = 100_000
LIST_PRICE = 2_000
FLOOR = 1_500
STEP = 200
FEE_BPS = 500


async def upper(task):
    return {"text": task["text"].upper()}


async def haggling_shop(exchange, *, floor=FLOOR, rounds_max=5, quote_validity_s=60.0):
    provider = await exchange.agent()
    await provider.advertise("text.upper", description="Upper-cases", price_millicredits=LIST_PRICE)
    await provider.serve(
        "text.upper",
        upper,
        pricing=LIST_PRICE,
        negotiation=ConcedingProvider(
            floor_millicredits=floor, step_millicredits=STEP, rounds_max=rounds_max
        ),
        quote_validity_s=quote_validity_s,
    )
    return provider


async def first_quote(buyer, *, budget=5_000):
    quotes = await buyer.request_quotes(
        QuoteRequest("text.upper", "x", budget_millicredits=budget, quotes_max=1)
    )
    assert len(quotes) == 1
    return quotes[0]


async def send_acceptance(exchange, buyer, quote_envelope, history):
    """Sends contract.open by hand, to present a history the Python client never would."""
    keys = exchange.keys_of(buyer)
    subject = subjects.exchange_request(buyer.agent_id, "contract.open")
    header = make_header(
        keys, audience="exchange", subject=subject, lifetime_s=10, clock=SystemClock()
    )
    request = OpenContract(
        header=header,
        quote=quote_envelope,
        task=msgspec.Raw(b'{"text": "a"}'),
        history=tuple(history),
    )
    return await exchange.raw_request(keys, subject, json_encoder.encode(seal(request, keys)))


async def test_a_negotiation_with_counter_offers_ends_in_a_deal_that_settles(exchange):
    provider = await haggling_shop(exchange)
    buyer = await exchange.funded_agent(GRANT)

    agreed = await buyer.negotiate(
        QuoteRequest("text.upper", "shout", budget_millicredits=1_800, timeout_s=1, quotes_max=1),
        strategy=TargetPriceBuyer(target_millicredits=1_200, budget_millicredits=1_800),
    )
    # The list price is over the budget, so the provider opens at the budget:
    # 1,800 → counter 1,200 → 1,600 → counter 1,320 → 1,500 (the floor) →
    # counter 1,440 → 1,500 again, below the buyer's next counter: accepted.
    assert (agreed.round, agreed.price_millicredits) == (3, FLOOR)
    assert len(agreed.history) == 6
    contract = await buyer.hire(agreed, {"text": "deal"})
    assert contract.price_millicredits == FLOOR
    assert (await buyer.balance()).held_millicredits == FLOOR

    delivery = await contract.wait_delivery(timeout_s=10)
    assert delivery.result == {"text": "DEAL"}
    view = await contract.accept_delivery(delivery)
    assert view.state == "released"
    fee = FLOOR * FEE_BPS // 10_000
    assert view.net_millicredits == FLOOR - fee
    assert (await provider.balance()).available_millicredits == FLOOR - fee
    assert (await buyer.balance()).available_millicredits == GRANT - FLOOR
    await exchange.check_invariants()


async def test_a_decline_with_its_reason_reaches_the_buyer(exchange):
    expensive = await exchange.agent()
    await expensive.advertise("text.upper", description="u", price_millicredits=9_000)
    await expensive.serve("text.upper", upper, pricing=9_000)
    picky = await exchange.agent()
    await picky.advertise("text.upper", description="u", price_millicredits=100)
    await picky.serve("text.upper", upper, pricing=lambda rfq: None)
    buyer = await exchange.agent()

    collection = await buyer.call_for_quotes(
        QuoteRequest("text.upper", "x", budget_millicredits=5_000, timeout_s=1)
    )
    assert collection.quotes == ()
    reasons = {
        decline.provider_id: (decline.code, decline.reason) for decline in collection.declines
    }
    assert reasons == {
        expensive.agent_id: ("over_budget", "over the budget"),
        picky.agent_id: ("declined", "declined by pricing"),
    }
    with pytest.raises(NoDeal) as caught:
        await buyer.negotiate(
            QuoteRequest("text.upper", "x", budget_millicredits=5_000, timeout_s=1),
            strategy=TargetPriceBuyer(target_millicredits=1_000, budget_millicredits=5_000),
        )
    assert {decline.code for decline in caught.value.declines} == {"over_budget", "declined"}
    assert caught.value.quotes_received == 0


async def test_a_counter_offer_to_an_expired_quote_is_declined(exchange):
    await haggling_shop(exchange, quote_validity_s=0.5)
    buyer = await exchange.agent()
    quote = await first_quote(buyer)
    await asyncio.sleep(0.7)

    with pytest.raises(OfferDeclined) as caught:
        await buyer.counter(quote, 1_000)
    assert caught.value.code == DeclineCode.QUOTE_EXPIRED
    assert caught.value.provider_id == quote.provider_id
    assert caught.value.decline.decline.rfq_id == quote.quote.rfq_id


async def test_a_counter_offer_that_expired_itself_is_declined(exchange):
    provider = await haggling_shop(exchange)
    buyer = await exchange.agent()
    quote = await first_quote(buyer)
    keys = exchange.keys_of(buyer)
    subject = subjects.negotiation(provider.agent_id)

    class LateClock:
        def now_ms(self):
            return SystemClock().now_ms() - 20_000

    counter = Counter(
        header=make_header(
            keys, audience=provider.agent_id, subject=subject, lifetime_s=10, clock=LateClock()
        ),
        rfq_id=quote.quote.rfq_id,
        capability="text.upper",
        round=1,
        quote_sha256=quote.quote_sha256,
        price_millicredits=1_000,
    )
    connection = await exchange.raw_connection(keys)
    message = await connection.request(subject, json_encoder.encode(seal(counter, keys)), timeout=5)
    answer = open_envelope(message.data).document
    assert isinstance(answer, Decline)
    assert (answer.code, answer.header.audience) == ("expired", buyer.agent_id)


async def test_the_buyer_may_walk_away(exchange):
    await haggling_shop(exchange)
    buyer = await exchange.agent()
    quote = await first_quote(buyer)

    await buyer.walk_away(quote, reason="found a cheaper way")
    # The walk-away is a publish; give the provider a moment to read it.
    await asyncio.sleep(0.2)
    with pytest.raises(OfferDeclined) as caught:
        await buyer.counter(quote, 1_000)
    assert caught.value.code == DeclineCode.NEGOTIATION_CLOSED


async def test_the_provider_walks_away_after_its_round_limit(exchange):
    await haggling_shop(exchange, rounds_max=1)
    buyer = await exchange.agent()
    quote = await first_quote(buyer)

    answer = await buyer.counter(quote, 1_000)
    assert (answer.round, answer.price_millicredits) == (1, 1_800)
    with pytest.raises(OfferDeclined) as caught:
        await buyer.counter(answer, 1_000)
    assert caught.value.code == DeclineCode.ROUNDS_EXHAUSTED
    # Once it walked away, the negotiation is over for good.
    with pytest.raises(OfferDeclined) as again:
        await buyer.counter(answer, 1_900)
    assert again.value.code == DeclineCode.NEGOTIATION_CLOSED


class JustLooking:
    """A strategy of one's own: it plugs in by having a budget and ``decide``."""

    budget_millicredits = 5_000

    def decide(self, situation):
        return WalkAway("just looking")


async def test_a_buyer_strategy_that_walks_away_ends_with_no_deal(exchange):
    provider = await haggling_shop(exchange)
    buyer = await exchange.funded_agent(GRANT)

    with pytest.raises(NoDeal) as caught:
        await buyer.negotiate(
            QuoteRequest(
                "text.upper",
                "x",
                budget_millicredits=JustLooking.budget_millicredits,
                timeout_s=1,
                quotes_max=1,
            ),
            strategy=JustLooking(),
        )
    assert caught.value.walked_away_from == (provider.agent_id,)
    assert caught.value.quotes_received == 1
    assert (await buyer.balance()).held_millicredits == 0
    await exchange.check_invariants()


async def test_a_counter_offer_to_a_provider_that_does_not_negotiate_fails_typed(exchange):
    provider = await exchange.agent()
    await provider.advertise("text.upper", description="u", price_millicredits=LIST_PRICE)
    await provider.serve("text.upper", upper, pricing=LIST_PRICE)
    buyer = await exchange.agent()
    quote = await first_quote(buyer)

    with pytest.raises(NegotiationError) as caught:
        await buyer.counter(quote, 1_000)
    assert caught.value.code == "unavailable"


async def test_accepting_a_quote_the_buyer_countered_is_refused(exchange):
    await haggling_shop(exchange)
    buyer = await exchange.funded_agent(GRANT)
    opening = await first_quote(buyer)
    answer = await buyer.counter(opening, 1_000)

    # The opening quote, presented with the counter-offer that rejected it.
    reply = await send_acceptance(exchange, buyer, opening.envelope, answer.history)
    assert isinstance(reply, ErrorReply)
    assert reply.code == "offer_superseded"
    assert (await buyer.balance()).held_millicredits == 0

    contract = await buyer.hire(answer, {"text": "b"})
    await contract.accept_delivery(await contract.wait_delivery(timeout_s=10))
    await exchange.check_invariants()


async def test_accepting_an_older_offer_after_a_newer_one_opened_a_contract_is_refused(exchange):
    await haggling_shop(exchange)
    buyer = await exchange.funded_agent(GRANT)
    opening = await first_quote(buyer)
    answer = await buyer.counter(opening, 1_000)
    contract = await buyer.hire(answer, {"text": "c"})

    with pytest.raises(ExchangeError) as caught:
        await buyer.hire(opening, {"text": "c"})
    assert caught.value.code == "offer_superseded"
    assert caught.value.contract_id == contract.contract_id
    assert (await buyer.balance()).held_millicredits == answer.price_millicredits
    await contract.accept_delivery(await contract.wait_delivery(timeout_s=10))
    await exchange.check_invariants()


async def test_parallel_acceptances_of_one_negotiation_open_one_contract(exchange):
    await haggling_shop(exchange)
    buyer = await exchange.funded_agent(GRANT)
    opening = await first_quote(buyer)
    answer = await buyer.counter(opening, 1_000)

    outcomes = await asyncio.gather(
        buyer.hire(opening, {"text": "d"}),
        buyer.hire(answer, {"text": "d"}),
        return_exceptions=True,
    )
    contracts = [outcome for outcome in outcomes if not isinstance(outcome, BaseException)]
    refusals = [outcome for outcome in outcomes if isinstance(outcome, ExchangeError)]
    assert len(contracts) == 1 and len(refusals) == 1
    assert refusals[0].code == "offer_superseded"
    balance = await buyer.balance()
    assert balance.held_millicredits == contracts[0].price_millicredits
    await exchange.check_invariants()


async def test_a_history_that_does_not_hold_together_is_refused(exchange):
    await haggling_shop(exchange)
    buyer = await exchange.funded_agent(GRANT)
    opening = await first_quote(buyer)
    answer = await buyer.counter(opening, 1_000)
    other_opening = await first_quote(buyer)

    # The counter-offer names the first opening quote, not this one.
    spliced = (other_opening.envelope, answer.history[1])
    reply = await send_acceptance(exchange, buyer, answer.envelope, spliced)
    assert isinstance(reply, ErrorReply)
    assert reply.code == "invalid_negotiation"
    # A round-1 quote without its history is refused too.
    reply = await send_acceptance(exchange, buyer, answer.envelope, ())
    assert isinstance(reply, ErrorReply)
    assert reply.code == "invalid_negotiation"
    assert (await buyer.balance()).held_millicredits == 0
    await exchange.check_invariants()


async def test_reputation_reorders_quotes_of_equal_price(exchange):
    first = await haggling_shop(exchange)
    second = await haggling_shop(exchange)
    buyer = await exchange.agent()

    trusted_second = {first.agent_id: 0.1, second.agent_id: 0.9}
    ranked = await buyer.request_quotes(
        QuoteRequest("text.upper", "x", budget_millicredits=5_000, quotes_max=2),
        reputation=trusted_second,
    )
    assert [quote.provider_id for quote in ranked] == [second.agent_id, first.agent_id]
    trusted_first = {first.agent_id: 0.9, second.agent_id: 0.1}
    ranked = await buyer.request_quotes(
        QuoteRequest("text.upper", "x", budget_millicredits=5_000, quotes_max=2),
        reputation=trusted_first,
    )
    assert [quote.provider_id for quote in ranked] == [first.agent_id, second.agent_id]
