"""A provider that echoes its task at one price, and a buyer's quote from it."""

from __future__ import annotations

from typing import Any

from agent_client import Agent, AgentKeys, QuoteRequest

PRICE = 1_000
CAPABILITY = "bench.echo"


async def echo(task: Any) -> Any:
    return task


async def open_echo_shop(provider: Agent, /) -> None:
    """``provider`` advertises CAPABILITY at PRICE and answers each task with itself."""
    await provider.advertise(CAPABILITY, description="echo", price_millicredits=PRICE)
    await provider.serve(CAPABILITY, echo, pricing=PRICE)


async def echo_quote(buyer: Agent, /) -> Any:
    """The echo shop's one quote for ``buyer`` (RFQ with a budget of PRICE)."""
    [quote] = await buyer.request_quotes(
        QuoteRequest(CAPABILITY, "echo", budget_millicredits=PRICE, quotes_max=1)
    )
    return quote


async def quote_from_a_shop_gone_away(exchange: Any, /) -> tuple[AgentKeys, Agent, Any]:
    """An echo shop that quoted a funded buyer, then disconnected: its keys (to come
    back with), the buyer and the quote, whose contract's notice waits for it."""
    provider_keys = AgentKeys.generate()
    provider = await exchange.agent(provider_keys)
    await open_echo_shop(provider)
    buyer = await exchange.funded_agent(PRICE)
    quote = await echo_quote(buyer)
    await provider.close()
    return provider_keys, buyer, quote
