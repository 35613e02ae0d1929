"""Retries, restarts and missed messages change no totals.

Proves that an operator's retried mint (same ``mint_id``, freshly signed)
mints once; that a contract settles at the fee agreed when it opened even if
the worker that releases it runs another fee rate; that a buyer who missed
the delivery notice (it was offline) still gets the result; and that a retry
of an acceptance after the quote expired learns the existing contract.
Every test ends with the ledger invariants.
"""

from __future__ import annotations

import asyncio

import pytest

from agent_client import (
    AgentKeys,
    ExchangeError,
    OperatorClient,
    QuoteRequest,
    ReceivedQuote,
    subjects,
)
from agent_client.protocol import Quote
from agent_client.signing import SystemClock, make_header, seal
from wallet import FeeSchedule

PRICE = 10_000


async def upper(task):
    return {"text": task["text"].upper()}


async def test_a_retried_mint_with_the_same_mint_id_mints_once(exchange):
    operator = await exchange.agent(exchange.operator_keys)
    recipient = await exchange.agent()
    first = await OperatorClient(operator).mint(
        recipient.agent_id, 5_000, reason="grant", mint_id="grant-42"
    )
    again = await OperatorClient(operator).mint(
        recipient.agent_id, 5_000, reason="grant", mint_id="grant-42"
    )
    assert first.transfer_id == again.transfer_id
    assert (await recipient.balance()).available_millicredits == 5_000
    await exchange.check_invariants()


async def test_a_mint_to_a_mistyped_agent_id_is_refused(exchange):
    operator = await exchange.agent(exchange.operator_keys)
    real_id = AgentKeys.generate().agent_id
    typo = real_id[:-1] + ("A" if real_id[-1] != "A" else "B")
    with pytest.raises(ExchangeError) as caught:
        await OperatorClient(operator).mint(typo, 5_000, reason="grant")
    assert caught.value.code == "invalid_request"
    await exchange.check_invariants()


async def test_a_contract_settles_at_the_fee_agreed_when_it_opened(exchange):
    provider = await exchange.agent()
    await provider.advertise("text.upper", description="u", price_millicredits=PRICE)
    await provider.serve("text.upper", upper, pricing=PRICE)
    buyer = await exchange.funded_agent(50_000)
    quotes = await buyer.request_quotes(
        QuoteRequest("text.upper", "x", budget_millicredits=PRICE, quotes_max=1)
    )
    contract = await buyer.hire(quotes[0], {"text": "a"})
    delivery = await contract.wait_delivery(timeout_s=10)

    # The worker that opened the contract leaves; one with a 10 % fee takes over.
    await exchange.restart(fees=FeeSchedule(escrow_bps=1_000))
    view = await contract.accept_delivery(delivery)
    assert view.fee_millicredits == PRICE * 500 // 10_000
    assert view.net_millicredits == PRICE - view.fee_millicredits
    assert (await provider.balance()).available_millicredits == view.net_millicredits
    await exchange.check_invariants()


async def test_a_buyer_that_missed_the_delivery_notice_still_gets_the_result(exchange):
    provider = await exchange.agent()
    await provider.advertise("text.upper", description="u", price_millicredits=PRICE)
    buyer_keys = AgentKeys.generate()
    operator = await exchange.agent(exchange.operator_keys)
    await OperatorClient(operator).mint(buyer_keys.agent_id, 50_000, reason="grant")
    buyer = await exchange.agent(buyer_keys)
    # The provider works slowly, so the buyer is gone when the result arrives.
    release_provider = asyncio.Event()

    async def slow_upper(task):
        await release_provider.wait()
        return await upper(task)

    await provider.serve("text.upper", slow_upper, pricing=PRICE)
    quotes = await buyer.request_quotes(
        QuoteRequest("text.upper", "x", budget_millicredits=PRICE, quotes_max=1)
    )
    contract = await buyer.hire(quotes[0], {"text": "offline"})
    await buyer.close()
    release_provider.set()
    await asyncio.sleep(0.5)

    returning = await exchange.agent(buyer_keys)
    delivery = await returning.wait_delivery(contract.contract_id, timeout_s=10)
    assert delivery.result == {"text": "OFFLINE"}
    view = await returning.accept_delivery(delivery)
    assert view.state == "released"
    await exchange.check_invariants()


async def test_retrying_an_acceptance_after_the_quote_expired_names_the_contract(exchange):
    provider_keys = AgentKeys.generate()
    provider = await exchange.agent(provider_keys)
    await provider.advertise("text.upper", description="u", price_millicredits=PRICE)
    await provider.serve("text.upper", upper, pricing=PRICE)
    buyer = await exchange.funded_agent(50_000)
    header = make_header(
        provider_keys,
        audience=buyer.agent_id,
        subject=subjects.rfq("text.upper"),
        lifetime_s=1,
        clock=SystemClock(),
    )
    short_lived = Quote(
        header=header,
        rfq_id="rfq-short",
        capability="text.upper",
        price_millicredits=PRICE,
        delivery_deadline_ms=SystemClock().now_ms() + 60_000,
    )
    quote = ReceivedQuote(short_lived, seal(short_lived, provider_keys))
    contract = await buyer.hire(quote, {"text": "a"})
    await asyncio.sleep(1.1)
    # The exchange finds the contract before it looks at the quote's expiry.
    again = await buyer.hire(quote, {"text": "a"})
    assert again.contract_id == contract.contract_id
    await exchange.check_invariants()
