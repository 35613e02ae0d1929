"""A busy agent stays within the exchange's per-agent limit of requests at once.

The exchange answers at most ``AGENT_REQUESTS_IN_FLIGHT_MAX`` of one agent's
requests at once and disconnects an agent that keeps sending past its
refusals as a flood. A provider with hundreds of contracts delivering while
the exchange is slow once got itself disconnected that way (measured at 200
deals/s offered). The client now holds its own requests to
``REQUESTS_IN_FLIGHT_MAX``: the rest wait in the client, and every one is
answered.
"""

from __future__ import annotations

import asyncio
from typing import Any

from agent_client import limits
from broker.limits import AGENT_REQUESTS_IN_FLIGHT_MAX


async def test_many_requests_at_once_never_exceed_the_clients_limit_and_all_succeed(exchange):
    agent = await exchange.funded_agent(5_000)
    connection = agent._connection
    sent = connection.request
    in_flight = 0
    most_in_flight = 0

    async def counted(*arguments: Any, **options: Any) -> Any:
        nonlocal in_flight, most_in_flight
        in_flight += 1
        most_in_flight = max(most_in_flight, in_flight)
        try:
            return await sent(*arguments, **options)
        finally:
            in_flight -= 1

    connection.request = counted
    asking = 3 * limits.REQUESTS_IN_FLIGHT_MAX
    balances = await asyncio.gather(*(agent.balance() for _ in range(asking)))
    assert [balance.available_millicredits for balance in balances] == [5_000] * asking
    assert most_in_flight == limits.REQUESTS_IN_FLIGHT_MAX < AGENT_REQUESTS_IN_FLIGHT_MAX
