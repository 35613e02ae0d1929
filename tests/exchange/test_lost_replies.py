"""A lost answer never turns finished work into a refund, nor leaves a contract hanging.

The exchange applies a request, but its answer comes after the client gave
up (here: the database is held by the test while the first try waits, so
the answer is late, exactly as when a worker dies after committing). The
client asks again with a newly signed request of the same content
(agent_client/retries.py) and reads the outcome back: an acceptance that
landed is a released contract, a quote that opened a contract is that
contract. The money moved once. Both databases: on SQLite the test holds
the worker's writer lock, on PostgreSQL the row the step must lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

import sqlalchemy as sa

from agent_client import Agent, AgentKeys, AgentOptions, OperatorClient
from agent_client.protocol import ContractState
from exchange.adapters.exchange_tables import contracts
from exchange.use_cases.exchange_accounts import agent_account_id
from tests.exchange.echo_shop import PRICE, echo_quote, open_echo_shop
from wallet.ledger_tables import ledger_accounts

# Each try gives up after this; the database is held for several of them.
SHORT_TIMEOUT_S = 0.5
HELD_FOR_S = 1.6
TRIES = 8
GRANT = 5 * PRICE


async def impatient_buyer(exchange) -> Agent:
    """A funded buyer whose requests time out quickly and are asked again."""
    options = AgentOptions(
        request_timeout_s=SHORT_TIMEOUT_S, request_tries=TRIES, close_grace_s=0.2
    )
    buyer = await Agent.connect(exchange.nats_url, AgentKeys.generate(), options=options)
    exchange.agents.append(buyer)
    operator = await exchange.agent(exchange.operator_keys)
    await OperatorClient(operator).mint(buyer.agent_id, GRANT, reason="test grant")
    return buyer


@contextlib.asynccontextmanager
async def database_held(exchange, lock_row: sa.Select) -> AsyncIterator[None]:
    """Make the worker's next write wait: its writer lock (SQLite), or a row (PostgreSQL)."""
    sqlite_writer = exchange.worker.context.sqlite_writer
    if sqlite_writer is not None:
        async with sqlite_writer.turn:
            yield
        return
    async with exchange.worker.engine.begin() as connection:
        await connection.execute(lock_row.with_for_update())
        yield


async def released_late(held: contextlib.AbstractAsyncContextManager[None]) -> asyncio.Event:
    """Hold the database in the background for HELD_FOR_S; the event says it is held."""
    holding = asyncio.Event()

    async def hold() -> None:
        async with held:
            holding.set()
            await asyncio.sleep(HELD_FOR_S)

    asyncio.get_running_loop().create_task(hold())
    return holding


def asked_again(caplog, endpoint: str) -> bool:
    """Whether the client asked ``endpoint`` again (its first answer was late)."""
    return any(
        endpoint in record.getMessage() and "asking again" in record.getMessage()
        for record in caplog.records
    )


async def test_an_acceptance_whose_answer_was_lost_is_read_back_as_released(exchange, caplog):
    caplog.set_level(logging.INFO, logger="agent_client.retries")
    provider = await exchange.agent()
    await open_echo_shop(provider)
    buyer = await impatient_buyer(exchange)
    contract = await buyer.hire(await echo_quote(buyer), {"n": 1})
    delivery = await contract.wait_delivery(timeout_s=10)

    row = sa.select(contracts.c.contract_id).where(contracts.c.contract_id == contract.contract_id)
    holding = await released_late(database_held(exchange, row))
    await holding.wait()
    view = await buyer.accept_delivery(delivery)

    assert asked_again(caplog, "contract.accept")
    assert view.state is ContractState.RELEASED
    balance = await buyer.balance()
    assert (balance.available_millicredits, balance.held_millicredits) == (GRANT - PRICE, 0)
    earned = (await provider.balance()).available_millicredits
    assert earned == PRICE - view.fee_millicredits
    await exchange.check_invariants()


async def test_a_hire_whose_answer_was_lost_finds_its_one_contract(exchange, caplog):
    caplog.set_level(logging.INFO, logger="agent_client.retries")
    provider = await exchange.agent()
    await open_echo_shop(provider)
    buyer = await impatient_buyer(exchange)
    quote = await echo_quote(buyer)

    account = agent_account_id(buyer.agent_id)
    row = sa.select(ledger_accounts.c.id).where(ledger_accounts.c.id == account)
    holding = await released_late(database_held(exchange, row))
    await holding.wait()
    contract = await buyer.hire(quote, {"n": 2})

    assert asked_again(caplog, "contract.open")
    view = await buyer.contract(contract.contract_id)
    assert view.buyer_id == buyer.agent_id
    # One hold, whatever the number of tries.
    balance = await buyer.balance()
    assert (balance.available_millicredits, balance.held_millicredits) == (GRANT - PRICE, PRICE)
    delivery = await contract.wait_delivery(timeout_s=10)
    assert (await buyer.accept_delivery(delivery)).state is ContractState.RELEASED
    await exchange.check_invariants()
