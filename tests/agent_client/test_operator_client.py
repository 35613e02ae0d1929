"""``OperatorClient`` sends the operator's requests through its agent, and only an operator's pass.

Over a real exchange (the session's nats-server, a fresh database): an
operator mints once per ``mint_id`` (a retry returns the first outcome);
it splits a dispute a buyer opened through its contract handle, and both
parties' money matches the split; it hides and shows another provider's
listing; an agent that is not an operator gets ``forbidden`` as a
``RefusedError`` for each of these and changes nothing; and the client
has no path of its own: once its agent is closed, it is closed too. Every
test ends with the exchange's money invariants.
"""

from __future__ import annotations

import pytest

from agent_client import (
    Agent,
    AgentClosed,
    ContractState,
    OperatorClient,
    QuoteRequest,
    RefusedError,
)

PRICE = 10_000
GRANT = 100_000
FEE_RATE_BPS = 500


async def upper(task):
    return {"text": task["text"].upper()}


async def operator_of(exchange) -> OperatorClient:
    return OperatorClient(await exchange.agent(exchange.operator_keys))


async def test_an_operator_mints_once_per_mint_id(exchange):
    operator = await operator_of(exchange)
    recipient = await exchange.agent()

    first = await operator.mint(recipient.agent_id, 5_000, reason="grant", mint_id="grant-7")
    again = await operator.mint(recipient.agent_id, 5_000, reason="grant", mint_id="grant-7")

    assert (first.recipient_id, first.amount_millicredits) == (recipient.agent_id, 5_000)
    assert again.transfer_id == first.transfer_id
    assert (await recipient.balance()).available_millicredits == 5_000
    await exchange.check_invariants()


async def test_an_operator_splits_a_dispute_the_buyer_opened_through_its_handle(exchange):
    operator = await operator_of(exchange)
    provider = await exchange.agent()
    await provider.advertise("text.upper", description="u", price_millicredits=PRICE)
    await provider.serve("text.upper", upper, pricing=PRICE)
    buyer = await exchange.funded_agent(GRANT)
    [quote] = await buyer.request_quotes(
        QuoteRequest("text.upper", "x", budget_millicredits=PRICE, timeout_s=2, quotes_max=1)
    )
    contract = await buyer.hire(quote, {"text": "hi"})
    await contract.wait_delivery(timeout_s=10)
    disputed = await contract.reject_delivery(reason="half of it is wrong")
    assert (disputed.state, disputed.dispute_reason) == (
        ContractState.DISPUTED,
        "half of it is wrong",
    )

    resolved = await operator.resolve(contract.contract_id, provider_share_bps=6_000, note="split")

    share = PRICE * 6_000 // 10_000
    fee = share * FEE_RATE_BPS // 10_000
    assert resolved.state is ContractState.RESOLVED
    assert (resolved.net_millicredits, resolved.refunded_millicredits) == (
        share - fee,
        PRICE - share,
    )
    settled = await contract.wait_settled(timeout_s=10)
    assert settled.state is ContractState.RESOLVED
    assert (await provider.balance()).available_millicredits == share - fee
    assert (await buyer.balance()).available_millicredits == GRANT - share
    await exchange.check_invariants()


async def test_an_operator_hides_and_shows_another_providers_listing(exchange):
    operator = await operator_of(exchange)
    provider = await exchange.agent()
    await provider.advertise("text.upper", description="u", price_millicredits=PRICE)

    hidden = await operator.deactivate_listing(provider.agent_id, "text.upper")
    assert (hidden.provider_id, hidden.status) == (provider.agent_id, "inactive")
    assert (await provider.search(capability="text.upper")).listings == []
    shown = await operator.reactivate_listing(provider.agent_id, "text.upper")
    assert shown.status == "active"
    assert len((await provider.search(capability="text.upper")).listings) == 1
    await exchange.check_invariants()


async def test_an_agent_that_is_not_an_operator_is_refused_and_changes_nothing(exchange):
    provider = await exchange.agent()
    await provider.advertise("text.upper", description="u", price_millicredits=PRICE)
    impostor = OperatorClient(await exchange.agent())

    refusals = []
    for attempt in (
        impostor.mint(impostor.agent.agent_id, 1_000, reason="free money"),
        impostor.resolve("c_" + "0" * 32, provider_share_bps=10_000),
        impostor.deactivate_listing(provider.agent_id, "text.upper"),
    ):
        with pytest.raises(RefusedError) as refused:
            await attempt
        refusals.append(refused.value.code)

    assert refusals == ["forbidden", "forbidden", "forbidden"]
    assert len((await provider.search(capability="text.upper")).listings) == 1
    await exchange.check_invariants()


async def test_the_operator_client_sends_only_through_its_agent(exchange):
    agent = await exchange.agent(exchange.operator_keys)
    operator = OperatorClient(agent)
    assert not hasattr(Agent, "mint") and not hasattr(Agent, "resolve")

    await agent.close()

    with pytest.raises(AgentClosed):
        await operator.mint(agent.agent_id, 1_000, reason="after close")
