"""serve() keeps finished work: a delivery that cannot land now is retried until the deadline.

The provider's handler finishes while no exchange worker serves (stopped,
as in a restart): the first delivery finds nobody (``unavailable``), and
``serve()`` retries until a worker is back, instead of dropping the task
and letting the contract be refunded. The buyer then gets the result and
the contract settles. A refusal that cannot pass later (the contract
already refunded) is not retried.
"""

from __future__ import annotations

import asyncio

from agent_client import ExchangeError
from exchange import ExchangeWorker
from tests.exchange.echo_shop import CAPABILITY, PRICE, echo_quote

OUTAGE_S = 1.5


async def test_a_delivery_during_an_exchange_outage_lands_when_the_exchange_is_back(exchange):
    provider = await exchange.agent()
    gate = asyncio.Event()
    started = asyncio.Event()

    async def slow_echo(task):
        started.set()
        await gate.wait()
        return task

    await provider.advertise(CAPABILITY, description="echo", price_millicredits=PRICE)
    await provider.serve(CAPABILITY, slow_echo, pricing=PRICE)
    buyer = await exchange.funded_agent(PRICE)
    contract = await buyer.hire(await echo_quote(buyer), {"n": 3})
    await asyncio.wait_for(started.wait(), 10)

    config = exchange.worker.config
    await exchange.worker.stop()
    gate.set()  # the work is done while no worker serves
    await asyncio.sleep(OUTAGE_S)
    exchange.worker = ExchangeWorker(config)
    await exchange.worker.start()

    delivery = await contract.wait_delivery(timeout_s=30)
    assert delivery.result == {"n": 3}
    view = await contract.accept_delivery(delivery)
    assert view.state == "released"
    await exchange.check_invariants()


async def test_a_delivery_the_exchange_refuses_for_good_is_not_retried(exchange):
    provider = await exchange.agent()
    await provider.advertise(CAPABILITY, description="echo", price_millicredits=PRICE)
    buyer = await exchange.funded_agent(PRICE)

    async def echo(task):
        return task

    await provider.serve(CAPABILITY, echo, pricing=PRICE, quote_validity_s=30)
    quote = await echo_quote(buyer)
    await provider.close()
    contract = await buyer.hire(quote, {"n": 1})
    # The provider gives up before it could deliver: the contract is refunded.
    keys = exchange.keys_of(provider)
    back = await exchange.agent(keys)
    await back.cancel(contract.contract_id, reason="cannot do it")
    attempts = 0
    provider_desk = back._provider
    original = provider_desk.deliver

    async def counting_deliver(*args, **kwargs):
        nonlocal attempts
        attempts += 1
        return await original(*args, **kwargs)

    provider_desk.deliver = counting_deliver  # type: ignore[method-assign]
    record = contract.record
    try:
        await provider_desk.deliver_until_deadline(record, {"n": 1}, seal_for=None)
        raise AssertionError("a delivery to a refunded contract must be refused")
    except ExchangeError as refused:
        assert refused.code == "invalid_state"
    assert attempts == 1
    assert (await buyer.balance()).available_millicredits == PRICE
    await exchange.check_invariants()
