"""Fixtures for the portal: real localstripe, the Connect stand-in, NATS, an exchange, a database.

One ``OfflineStripe`` (a localstripe subprocess and the Stripe-format Connect
stand-in) serves the whole session; each test gets a fresh database (SQLite,
and PostgreSQL when AGENTX_TEST_POSTGRES_URL is set), a real exchange worker
on the session's nats-server, and a real portal server (uvicorn on a free
loopback port) whose webhook localstripe calls. Argon2 runs with a cheap
profile here except where a test checks the production profile.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
import sqlalchemy as sa
import stripe
from sqlalchemy.ext.asyncio import AsyncConnection

from agent_client import Agent, AgentKeys, OperatorClient
from exchange import ExchangeConfig, ExchangeWorker, check_exchange_invariants, migrate_database
from exchange.bootstrap.worker import EXCHANGE_MIGRATIONS
from human_portal.accounts import User, sign_up, user_by_id
from human_portal.config import PortalConfig
from human_portal.linking import issue_link_code
from human_portal.migrations import VERSIONS_PATH as PORTAL_MIGRATIONS
from human_portal.money_rules import top_up_quote
from human_portal.portal_context import PortalContext
from human_portal.portal_server import OfflineStripe, PortalServer
from human_portal.portal_tables import users
from human_portal.security import PasswordProfile
from human_portal.topups import TopUp, TopUpStatus, start_top_up, top_up_of

OPERATOR_EMAIL = "ops@example.com"
PASSWORD = "correct horse battery"
CHEAP_PASSWORDS = PasswordProfile(time_cost=1, memory_cost_kib=1024, parallelism=1)
WEBHOOK_WAIT_S = 15.0


@pytest.fixture
def database_extra_version_locations() -> Sequence[str | Path]:
    return [EXCHANGE_MIGRATIONS, PORTAL_MIGRATIONS]


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def offline_stripe() -> AsyncIterator[OfflineStripe]:
    async with OfflineStripe() as offline:
        yield offline


@dataclass
class Harness:
    """A running exchange and portal on one database, and helpers to drive them."""

    portal: PortalServer
    worker: ExchangeWorker
    operator_keys: AgentKeys
    nats_url: str
    offline: OfflineStripe
    agents: list[Agent] = field(default_factory=list)

    @property
    def context(self) -> PortalContext:
        return self.portal.context

    @property
    def url(self) -> str:
        return self.portal.url

    async def user(self, email: str = "human@example.com") -> User:
        return await sign_up(self.context, email, PASSWORD)

    async def user_named(self, email: str) -> User:
        """An account made elsewhere (through the browser), looked up by email."""

        async def work(connection: AsyncConnection) -> User:
            found = await connection.execute(
                sa.select(users.c.user_id).where(users.c.email == email)
            )
            user = await user_by_id(connection, found.scalar_one())
            assert user is not None
            return user

        return await self.context.read(work)

    async def agent(self, keys: AgentKeys | None = None) -> Agent:
        agent = await Agent.connect(self.nats_url, keys or AgentKeys.generate())
        self.agents.append(agent)
        return agent

    async def linked_agent(self, user: User, *, label: str = "bot") -> Agent:
        agent = await self.agent()
        issued = await issue_link_code(self.context, user, label=label)
        await agent.link_human(issued.code)
        return agent

    async def mint(self, agent_id: str, amount_millicredits: int) -> None:
        """Credits granted by the exchange's operator (a test shortcut around Stripe)."""
        operator = await self.agent(self.operator_keys)
        await OperatorClient(operator).mint(agent_id, amount_millicredits, reason="test grant")

    async def paid_top_up(self, user: User, agent_id: str, package: str = "starter") -> TopUp:
        """A top-up paid with localstripe's test card; waits for the webhook to mint."""
        quote = top_up_quote(package, custom_cents=None, fees=self.context.config.fees)
        started = await start_top_up(self.context, user, agent_id, quote)
        payment_intent_id = started.top_up.payment_intent_id
        assert payment_intent_id is not None
        client = stripe_client(self.offline)
        await client.v1.payment_intents.update_async(
            payment_intent_id, params={"payment_method": "pm_card_visa"}
        )
        await client.v1.payment_intents.confirm_async(payment_intent_id)
        return await self.wait_paid(user, started.top_up.topup_id)

    async def wait_paid(self, user: User, topup_id: str) -> TopUp:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + WEBHOOK_WAIT_S
        while loop.time() < deadline:
            top_up = await top_up_of(self.context, user, topup_id)
            if top_up.status is TopUpStatus.PAID:
                return top_up
            await asyncio.sleep(0.1)
        raise AssertionError(f"top-up {topup_id} was not paid within {WEBHOOK_WAIT_S} s")

    async def check_invariants(self) -> None:
        await check_exchange_invariants(self.worker.engine)


def stripe_client(offline: OfflineStripe) -> stripe.StripeClient:
    settings = offline.settings()
    return stripe.StripeClient(
        settings.secret_key,
        base_addresses={"api": settings.api_base},  # type: ignore[typeddict-item]
        http_client=stripe.HTTPXClient(timeout=10),
    )


@pytest_asyncio.fixture
async def harness(
    nats_url: str,
    database_url: str,
    offline_stripe: OfflineStripe,
    exchange_keys: AgentKeys,
    portal_keys: AgentKeys,
) -> AsyncIterator[Harness]:
    await migrate_database(database_url)
    operator_keys = AgentKeys.generate()
    worker = ExchangeWorker(
        ExchangeConfig(
            nats_url=nats_url,
            database_url=database_url,
            keys=exchange_keys,
            operator_ids=frozenset({operator_keys.agent_id}),
            portal_id=portal_keys.agent_id,
        )
    )
    await worker.start()
    config = PortalConfig(
        database_url=database_url,
        stripe=offline_stripe.settings(),
        nats_url=nats_url,
        operator_emails=frozenset({OPERATOR_EMAIL}),
        password_profile=CHEAP_PASSWORDS,
    )
    portal = PortalServer(config, operator_keys=operator_keys, portal_keys=portal_keys)
    await portal.start()
    await offline_stripe.register_webhook(portal.url)
    running = Harness(portal, worker, operator_keys, nats_url, offline_stripe)
    try:
        yield running
        # A safety net: each money test checks explicitly, this catches the rest.
        await running.check_invariants()
    finally:
        for agent in running.agents:
            await agent.close()
        await portal.stop()
        await worker.stop()


class Browser:
    """An HTTP client that keeps cookies and fills in forms' CSRF tokens, like a browser."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client
        self.csrf_token = ""

    async def get(self, path: str, /) -> httpx.Response:
        response = await self.client.get(path)
        found = re.search(r'name="csrf_token" value="([^"]+)"', response.text)
        if found is not None:
            self.csrf_token = found.group(1)
        return response

    async def post(self, path: str, /, **fields: str) -> httpx.Response:
        return await self.client.post(path, data={"csrf_token": self.csrf_token, **fields})

    async def sign_up(self, email: str, password: str = PASSWORD) -> httpx.Response:
        await self.get("/sign-up")
        response = await self.post(
            "/sign-up", email=email, password=password, password_again=password
        )
        await self.get("/dashboard")
        return response


@pytest_asyncio.fixture
async def browser(harness: Harness) -> AsyncIterator[Browser]:
    async with httpx.AsyncClient(base_url=harness.url, timeout=30) as client:
        yield Browser(client)
