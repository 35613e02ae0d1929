"""Clients for broker tests, with every timeout stated.

A nats-py client with reconnection off (a test that loses its server should
fail at once, not retry quietly for minutes), and a GET on the monitor port.
"""

from __future__ import annotations

import asyncio
import json
import urllib.request
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import nats
from nats.aio.client import Client

CONNECT_TIMEOUT_S = 2.0
DRAIN_TIMEOUT_S = 2.0
REQUEST_TIMEOUT_S = 2.0
# nats-py types the flush timeout as whole seconds.
FLUSH_TIMEOUT_S = 2
SUBSCRIPTION_WAIT_TIMEOUT_S = 2.0
MONITOR_TIMEOUT_S = 2.0
MONITOR_RESPONSE_BYTES_MAX = 1024 * 1024


@asynccontextmanager
async def connected_client(url: str) -> AsyncIterator[Client]:
    client = await nats.connect(
        url,
        connect_timeout=CONNECT_TIMEOUT_S,
        drain_timeout=DRAIN_TIMEOUT_S,
        allow_reconnect=False,
        max_reconnect_attempts=0,
    )
    try:
        yield client
    finally:
        await client.close()


async def flush_subscriptions(client: Client) -> None:
    """Return once the server has every subscription ``client`` has made.

    One ``flush()`` is not enough with nats-py 2.16: it writes its PING
    straight to the socket, ahead of a SUB still in the client's buffer, so
    the PONG can come back before the server has the subscription (and a
    message published from another connection is then lost). By the time
    that first PONG arrives the buffer has gone out, so a second PING queues
    behind the SUB and its PONG proves the server has it.
    """
    await client.flush(timeout=FLUSH_TIMEOUT_S)
    await client.flush(timeout=FLUSH_TIMEOUT_S)


async def get_monitor_json(monitor_url: str, path: str) -> Any:
    """GET a monitor endpoint (``/varz``, ``/healthz``) and decode its JSON."""

    def get() -> Any:
        with urllib.request.urlopen(monitor_url + path, timeout=MONITOR_TIMEOUT_S) as response:
            return json.loads(response.read(MONITOR_RESPONSE_BYTES_MAX))

    return await asyncio.to_thread(get)
