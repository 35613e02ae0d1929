"""A real exchange worker per test: the session's nats-server, a fresh database.

The database comes from ``database_url`` (SQLite file, and PostgreSQL when
AGENTX_TEST_POSTGRES_URL is set), so every test here runs on both.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest_asyncio
from nats.aio.client import Client

from agent_client import Agent, AgentKeys, AgentOptions, OperatorClient, subjects
from agent_client.protocol import Document, Reply, endpoint_of, json_encoder
from agent_client.replies import open_reply
from agent_client.signing import SystemClock, make_header, seal
from agent_client.transport import connect_nats
from broker import EmbeddedNatsServer
from broker.signed_service import AgentEvictor
from exchange import ExchangeConfig, ExchangeWorker, check_exchange_invariants, migrate_database
from tests.exchange.notice_tap import NoticeTap, settled, start_tap

TIMERS_ASLEEP_S = 3_600  # a sweep interval no test outlives


@dataclass
class RunningExchange:
    worker: ExchangeWorker
    operator_keys: AgentKeys
    nats_url: str
    # The session server's auth callout, which evicts flooding agents.
    evictor: AgentEvictor | None = None
    agents: list[Agent] = field(default_factory=list)
    keys_by_agent_id: dict[str, AgentKeys] = field(default_factory=dict)
    raw_connections: dict[str, Client] = field(default_factory=dict)
    # Each agent's notices, as sent (tests/exchange/notice_tap.py).
    taps: dict[str, NoticeTap] = field(default_factory=dict)

    async def agent(self, keys: AgentKeys | None = None) -> Agent:
        keys = keys or AgentKeys.generate()
        await self.tap(keys)
        # Tests stall handlers on purpose; closing need not wait for them.
        agent = await Agent.connect(self.nats_url, keys, options=AgentOptions(close_grace_s=0.2))
        self.agents.append(agent)
        self.keys_by_agent_id[agent.agent_id] = keys
        return agent

    async def tap(self, keys: AgentKeys) -> NoticeTap:
        """Start recording what ``keys`` is sent (once per agent)."""
        if keys.agent_id not in self.taps:
            self.taps[keys.agent_id] = await start_tap(self.nats_url, keys)
        return self.taps[keys.agent_id]

    async def restart(self, **config_changes: object) -> ExchangeWorker:
        """Replace the worker by one with changed settings (same database and keys)."""
        await self.worker.stop()
        self.worker = ExchangeWorker(
            dataclasses.replace(self.worker.config, **config_changes), evictor=self.evictor
        )
        await self.worker.start()
        return self.worker

    async def put_timers_to_sleep(self, **config_changes: object) -> ExchangeWorker:
        """Restart with the timer loop asleep, so that only the test's own
        sweeps run: a pass of the loop, while a test has moved the clock or
        just made a row due, would take the step the test checks."""
        return await self.restart(sweep_interval_s=TIMERS_ASLEEP_S, **config_changes)

    def keys_of(self, agent: Agent) -> AgentKeys:
        """Tests forge documents with an agent's own keys to reach edge cases."""
        return self.keys_by_agent_id[agent.agent_id]

    async def funded_agent(self, amount_millicredits: int) -> Agent:
        agent = await self.agent()
        operator = await self.agent(self.operator_keys)
        await OperatorClient(operator).mint(
            agent.agent_id, amount_millicredits, reason="test grant"
        )
        return agent

    async def check_invariants(self) -> None:
        await check_exchange_invariants(self.worker.engine)

    async def notices_to(self, agent_id: str) -> list[Document]:
        """The notices sent to ``agent_id`` (an agent made by :meth:`agent`, or tapped
        with :meth:`tap`), in order, each once, when nothing more is being sent."""
        await settled(
            list(self.taps.values()), busy=lambda: self.worker.context.notices_in_flight > 0
        )
        return list(self.taps[agent_id].notices.values())

    async def raw_connection(self, keys: AgentKeys) -> Client:
        """A plain NATS connection authenticated as ``keys``, for hand-made messages."""
        client = self.raw_connections.get(keys.agent_id)
        if client is None:
            client = await connect_nats(self.nats_url, keys, name="raw-test-agent")
            self.raw_connections[keys.agent_id] = client
        return client

    async def signed_request(
        self, keys: AgentKeys, kind: type[Document], /, **fields: object
    ) -> Reply:
        """A hand-signed request of ``kind`` from ``keys``, without an Agent (which
        would, say, acknowledge its notices by itself): the exchange's answer."""
        return await self.raw_request(keys, *self.signed_payload(keys, kind, **fields))

    def signed_payload(
        self, keys: AgentKeys, kind: type[Document], /, **fields: object
    ) -> tuple[str, bytes]:
        """The subject and bytes of a request of ``kind`` signed by ``keys`` (to send
        once, or twice as a replay)."""
        subject = subjects.exchange_request(keys.agent_id, endpoint_of(kind))
        header = make_header(
            keys, audience="exchange", subject=subject, lifetime_s=10, clock=SystemClock()
        )
        document = kind(header=header, **fields)  # type: ignore[call-arg]
        return subject, json_encoder.encode(seal(document, keys))

    async def raw_request(self, keys: AgentKeys, subject: str, payload: bytes) -> Reply:
        """A hand-made request to the exchange from ``keys``' connection: the exchange's
        signed answer, verified as any client must (agent_client/replies.py)."""
        client = await self.raw_connection(keys)
        message = await client.request(subject, payload, timeout=5)
        _, reply = open_reply(
            message.data,
            signer_id=self.worker.exchange_id,
            audience=subjects.agent_id_in_request_subject(subject) or "",
            request_subject=subject,
            request_payload=payload,
            clock=SystemClock(),
        )
        return reply


@pytest_asyncio.fixture
async def exchange(
    nats_server: EmbeddedNatsServer, nats_url: str, database_url: str, exchange_keys: AgentKeys
) -> AsyncIterator[RunningExchange]:
    await migrate_database(database_url)
    operator_keys = AgentKeys.generate()
    worker = ExchangeWorker(
        ExchangeConfig(
            nats_url=nats_url,
            database_url=database_url,
            keys=exchange_keys,
            operator_ids=frozenset({operator_keys.agent_id}),
        ),
        evictor=nats_server.callout,
    )
    await worker.start()
    running = RunningExchange(worker, operator_keys, nats_url, evictor=nats_server.callout)
    try:
        yield running
        # A safety net: each money test checks explicitly, this catches the rest.
        await running.check_invariants()
    finally:
        for agent in running.agents:
            await agent.close()
        for client in running.raw_connections.values():
            await client.close()
        for tap in running.taps.values():
            await tap.client.close()
        # A test may have replaced the worker (to restart it); stop the current one.
        await running.worker.stop()


@dataclass
class RawAgent:
    """A plain NATS connection authenticated as an agent, for hand-made (broken) messages."""

    keys: AgentKeys
    client: Client

    @property
    def agent_id(self) -> str:
        return self.keys.agent_id


@pytest_asyncio.fixture
async def raw_agent(nats_url: str) -> AsyncIterator[RawAgent]:
    keys = AgentKeys.generate()
    client = await connect_nats(nats_url, keys, name="raw-test-agent")
    yield RawAgent(keys, client)
    await client.drain()
