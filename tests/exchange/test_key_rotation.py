"""Rotating the exchange key keeps every contract: evidence of the old key stays the exchange's.

A provider is hired while offline, so the notice of its contract (and the
contract record inside it) is signed by the old key and waits in the
stream. The operator stops the exchange, rotates the key
(``agentx keys rotate-exchange``) and starts it again on the same data
directory. The provider comes back, learns the new id and the previous one
from the signed ``info``, performs the old contract, and the buyer's
accept settles it. Only the new key may serve the exchange's subjects, and
a client that pins the old id refuses the new exchange.
"""

from __future__ import annotations

import pytest

from agent_client import Agent, AgentKeys, AgentOptions, OperatorClient, SignatureRejected
from exchange import EmbeddedStack, StackConfig, check_exchange_invariants
from exchange.entrypoints.cli import main as agentx
from tests.exchange.echo_shop import PRICE, echo_quote, open_echo_shop


async def test_contracts_opened_before_a_key_rotation_are_performed_and_settled(tmp_path):
    provider_keys, buyer_keys = AgentKeys.generate(), AgentKeys.generate()
    options = AgentOptions(close_grace_s=0.2)
    config = StackConfig(data_dir=tmp_path)
    async with EmbeddedStack(config) as stack:
        old_id = stack.exchange_keys.agent_id
        provider = await Agent.connect(stack.nats_url, provider_keys, options=options)
        await open_echo_shop(provider)
        async with await Agent.connect(stack.nats_url, stack.operator_keys) as operator:
            await OperatorClient(operator).mint(buyer_keys.agent_id, PRICE, reason="test")
        buyer = await Agent.connect(stack.nats_url, buyer_keys, options=options)
        quote = await echo_quote(buyer)
        await provider.close()
        contract = await buyer.hire(quote, {"n": 5})
        await buyer.close()

    assert agentx(["keys", "rotate-exchange", "--data-dir", str(tmp_path)]) == 0

    async with EmbeddedStack(config) as stack:
        assert stack.exchange_keys.agent_id != old_id
        assert stack.previous_exchange_ids == {old_id}
        with pytest.raises(SignatureRejected):
            await Agent.connect(
                stack.nats_url, AgentKeys.generate(), options=AgentOptions(exchange_id=old_id)
            )
        provider = await Agent.connect(stack.nats_url, provider_keys, options=options)
        await open_echo_shop(provider)  # the old contract's notice runs now
        buyer = await Agent.connect(stack.nats_url, buyer_keys, options=options)
        delivery = await buyer.wait_delivery(contract.contract_id, timeout_s=20)
        assert delivery.result == {"n": 5}
        view = await buyer.accept_delivery(delivery)
        assert view.state == "released"
        await provider.close()
        await buyer.close()
        await check_exchange_invariants(stack.worker.engine)
