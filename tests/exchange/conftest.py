"""A real exchange worker per test: the session's nats-server, a fresh database.

The database comes from ``database_url`` (SQLite file, and PostgreSQL when
AGENTX_TEST_POSTGRES_URL is set), so every test here runs on both.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import nats
import pytest_asyncio
from nats.aio.client import Client

from agent_client import Agent, AgentKeys, AgentOptions
from exchange import ExchangeConfig, ExchangeWorker, check_exchange_invariants, migrate_database


@dataclass
class RunningExchange:
    worker: ExchangeWorker
    operator_keys: AgentKeys
    nats_url: str
    agents: list[Agent] = field(default_factory=list)
    keys_by_agent_id: dict[str, AgentKeys] = field(default_factory=dict)

    async def agent(self, keys: AgentKeys | None = None) -> Agent:
        keys = keys or AgentKeys.generate()
        # Tests stall handlers on purpose; closing need not wait for them.
        agent = await Agent.connect(self.nats_url, keys, options=AgentOptions(close_grace_s=0.2))
        self.agents.append(agent)
        self.keys_by_agent_id[agent.agent_id] = keys
        return agent

    async def restart(self, **config_changes: object) -> ExchangeWorker:
        """Replace the worker by one with changed settings (same database and keys)."""
        await self.worker.stop()
        self.worker = ExchangeWorker(dataclasses.replace(self.worker.config, **config_changes))
        await self.worker.start()
        return self.worker

    def keys_of(self, agent: Agent) -> AgentKeys:
        """Tests forge documents with an agent's own keys to reach edge cases."""
        return self.keys_by_agent_id[agent.agent_id]

    async def funded_agent(self, amount_millicredits: int) -> Agent:
        agent = await self.agent()
        operator = await self.agent(self.operator_keys)
        await operator.mint(agent.agent_id, amount_millicredits, reason="test grant")
        return agent

    async def check_invariants(self) -> None:
        await check_exchange_invariants(self.worker.engine)


@pytest_asyncio.fixture
async def exchange(nats_url: str, database_url: str) -> AsyncIterator[RunningExchange]:
    await migrate_database(database_url)
    operator_keys = AgentKeys.generate()
    worker = ExchangeWorker(
        ExchangeConfig(
            nats_url=nats_url,
            database_url=database_url,
            keys=AgentKeys.generate(),
            operator_ids=frozenset({operator_keys.agent_id}),
        )
    )
    await worker.start()
    running = RunningExchange(worker, operator_keys, nats_url)
    try:
        yield running
        # A safety net: each money test checks explicitly, this catches the rest.
        await running.check_invariants()
    finally:
        for agent in running.agents:
            await agent.close()
        # A test may have replaced the worker (to restart it); stop the current one.
        await running.worker.stop()


@pytest_asyncio.fixture
async def raw_client(nats_url: str) -> AsyncIterator[Client]:
    """A plain NATS connection for sending hand-made (broken) messages."""
    client = await nats.connect(nats_url)
    yield client
    await client.drain()
