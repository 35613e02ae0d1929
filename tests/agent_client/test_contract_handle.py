"""The ``Contract`` that ``hire`` returns carries every operation of its contract.

Over a real exchange (the session's nats-server, a fresh database): a buyer
drives a whole contract through the handle alone (view, wait for the
delivery, accept, wait for the settlement, rate, read the evidence) and
every state it sees is a ``ContractState``; a buyer's cancel through the
handle is a request until the provider cancels, and the settlement it then
waits for is the refund; the exchange's refusals arrive as the error class
their code calls for (``RefusedError``, ``RejectedError``); and a delivery
of another contract is refused before anything is sent. Every test ends
with the exchange's money invariants.
"""

from __future__ import annotations

import asyncio

import pytest

from agent_client import (
    ContractState,
    Delivery,
    QuoteRequest,
    RefusedError,
    RejectedError,
)

PRICE = 10_000
GRANT = 100_000
FEE_RATE_BPS = 500


async def upper(task):
    return {"text": task["text"].upper()}


async def never(task):
    await asyncio.Event().wait()


async def hired(exchange, handler=upper):
    """A provider serving ``handler``, a funded buyer, and the contract it hired."""
    provider = await exchange.agent()
    await provider.advertise("text.upper", description="u", price_millicredits=PRICE)
    await provider.serve("text.upper", handler, pricing=PRICE)
    buyer = await exchange.funded_agent(GRANT)
    [quote] = await buyer.request_quotes(
        QuoteRequest("text.upper", "x", budget_millicredits=PRICE, timeout_s=2, quotes_max=1)
    )
    contract = await buyer.hire(quote, {"text": "hi"})
    return provider, buyer, contract


async def test_a_buyer_drives_a_whole_contract_through_its_handle(exchange):
    provider, buyer, contract = await hired(exchange)
    assert contract.contract_id == contract.record.contract_id
    assert (contract.record.buyer_id, contract.record.provider_id) == (
        buyer.agent_id,
        provider.agent_id,
    )
    assert (await contract.view()).state in {ContractState.OPEN, ContractState.DELIVERED}

    delivery = await contract.wait_delivery(timeout_s=10)
    assert delivery.result == {"text": "HI"}
    released = await contract.accept_delivery(delivery)
    assert released.state is ContractState.RELEASED
    settled = await contract.wait_settled(timeout_s=10)
    fee = PRICE * FEE_RATE_BPS // 10_000
    assert (settled.state, settled.net_millicredits) == (ContractState.RELEASED, PRICE - fee)

    rating = await contract.rate(5, "quick")
    assert (rating.rating.contract_id, rating.rating.stars) == (contract.contract_id, 5)
    evidence = await contract.evidence()
    assert [event.to_state for event in evidence.events] == [
        ContractState.OPEN,
        ContractState.DELIVERED,
        ContractState.RELEASED,
    ]
    assert all(type(event.to_state) is ContractState for event in evidence.events)
    assert (await contract.view()).state is ContractState.RELEASED
    assert (await provider.balance()).available_millicredits == PRICE - fee
    await exchange.check_invariants()


async def test_a_cancel_through_the_handle_asks_and_the_providers_cancel_refunds(exchange):
    provider, buyer, contract = await hired(exchange, never)

    asked = await contract.cancel(reason="changed my mind")
    assert asked.state is ContractState.OPEN
    refunded = await provider.cancel(contract.contract_id, reason="agreed")
    assert refunded.state is ContractState.REFUNDED

    settled = await contract.wait_settled(timeout_s=10)
    assert (settled.state, settled.refunded_millicredits) == (ContractState.REFUNDED, PRICE)
    assert (await buyer.balance()).available_millicredits == GRANT
    await exchange.check_invariants()


async def test_the_exchanges_refusals_arrive_as_the_class_of_their_code(exchange):
    _, _, contract = await hired(exchange, never)

    with pytest.raises(RefusedError) as not_settled:
        await contract.rate(5)
    assert (not_settled.value.code, not_settled.value.contract_id) == (
        "not_settled",
        contract.contract_id,
    )
    with pytest.raises(RefusedError) as not_delivered:
        await contract.reject_delivery(reason="nothing came")
    assert not_delivered.value.code == "invalid_state"
    assert not not_delivered.value.should_retry
    # Six stars break the document's schema: the request itself is wrong.
    with pytest.raises(RejectedError) as malformed:
        await contract.rate(6)
    assert malformed.value.code == "malformed"
    assert (await contract.view()).state is ContractState.OPEN
    await exchange.check_invariants()


async def test_a_delivery_of_another_contract_is_refused_before_anything_is_sent(exchange):
    _, _, contract = await hired(exchange, never)
    stranger = Delivery("c_" + "0" * 32, {"text": "HI"}, "0" * 64)

    with pytest.raises(ValueError):
        await contract.accept_delivery(stranger)
    assert (await contract.view()).state is ContractState.OPEN
    await exchange.check_invariants()
