"""The portal's composition root: ``PortalServer`` (and ``OfflineStripe`` for offline mode).

``PortalServer`` opens the database, makes sure the ledger accounts exist,
builds the context, connects to NATS for the agents' endpoints (and, with an
operator key, for resolving disputes), serves the web app with uvicorn in
the caller's event loop, and retries payouts whose Stripe outcome was
unknown every minute.

``OfflineStripe`` starts ``localstripe`` (payments, webhooks, Stripe.js) and
the Connect stand-in, and gives the matching ``StripeSettings``; once the
portal listens, ``register_webhook`` points localstripe's signed events at it.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging

import nats.errors
from nats.aio.client import Client
from sqlalchemy.ext.asyncio import AsyncEngine

from agent_client.keys import AgentKeys
from agent_client.signing import Clock, SystemClock
from agent_client.transport import connect_nats
from broker.signed_service import AgentEvictor
from exchange.use_cases.exchange_accounts import ensure_platform_accounts
from human_portal.agent_service import AgentService
from human_portal.config import PortalConfig, StripeSettings
from human_portal.exchange_relay import ExchangeRelay
from human_portal.http_server import EmbeddedHttpServer
from human_portal.ledger_accounts import ensure_portal_accounts
from human_portal.localstripe_process import (
    OFFLINE_PUBLISHABLE_KEY,
    OFFLINE_SECRET_KEY,
    LocalStripe,
)
from human_portal.offline_connect import OfflineConnect, create_offline_connect_app
from human_portal.payouts import resume_pending_payouts
from human_portal.portal_context import PortalContext
from human_portal.security import new_token
from human_portal.stripe_gateway import StripeSdkGateway
from human_portal.web import create_app
from human_portal.web.pages_operator import ExchangeDisputeResolver
from wallet import SqlLedger, WalletError, open_database

__all__ = ["OfflineStripe", "PortalServer"]

log = logging.getLogger(__name__)

NATS_CONNECT_TIMEOUT_S = 5
PAYOUT_RECOVERY_INTERVAL_S = 60.0
# A payout younger than this may still be in its first attempt.
PAYOUT_RECOVERY_AGE_MS = 60_000


class PortalServer:
    def __init__(
        self,
        config: PortalConfig,
        /,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        clock: Clock | None = None,
        operator_keys: AgentKeys | None = None,
        portal_keys: AgentKeys | None = None,
        evictor: AgentEvictor | None = None,
    ) -> None:
        self.config = config
        self._http = EmbeddedHttpServer(host=host, port=port)
        self._clock = clock or SystemClock()
        self._operator_keys = operator_keys
        # The portal's own key: it authenticates the NATS connection and
        # signs the portal's answers to agents. Needed with a NATS URL.
        self._portal_keys = portal_keys
        self._evictor = evictor
        self._engine: AsyncEngine | None = None
        self._gateway: StripeSdkGateway | None = None
        self._nats: Client | None = None
        self._agents: AgentService | None = None
        self._recovery: asyncio.Task[None] | None = None
        self._context: PortalContext | None = None

    @property
    def url(self) -> str:
        return self._http.url

    @property
    def context(self) -> PortalContext:
        assert self._context is not None, "the portal is not started"
        return self._context

    async def start(self) -> None:
        assert self._context is None, "the portal is already started"
        try:
            await self._start()
        except BaseException:
            await self.stop()
            raise

    async def _start(self) -> None:
        self._http.bind()
        if not self.config.public_url:
            self.config = dataclasses.replace(self.config, public_url=self._http.url)
        self._engine = open_database(self.config.database_url)
        ledger = SqlLedger(self._engine)
        await ensure_platform_accounts(ledger)
        await ensure_portal_accounts(ledger)
        self._gateway = StripeSdkGateway(self.config.stripe)
        self._context = PortalContext(
            self._engine,
            config=self.config,
            clock=self._clock,
            payments=self._gateway,
            connect=self._gateway,
        )
        resolver = None
        relay = None
        if self.config.nats_url is not None:
            assert self._portal_keys is not None, "a portal on NATS needs its key"
            self._nats = await connect_nats(
                self.config.nats_url,
                self._portal_keys,
                name="agentx-portal",
                connect_timeout_s=NATS_CONNECT_TIMEOUT_S,
            )
            self._agents = AgentService(
                self._nats, self._portal_keys, self._context, evictor=self._evictor
            )
            await self._agents.start()
            relay = await ExchangeRelay.connect(self._nats, clock=self._clock)
            if self._operator_keys is not None:
                resolver = ExchangeDisputeResolver(self.config.nats_url, self._operator_keys)
        app = create_app(self._context, relay=relay, resolver=resolver)
        await self._http.start(app)
        self._recovery = asyncio.create_task(self._recover_payouts())

    async def _recover_payouts(self) -> None:
        while True:
            await asyncio.sleep(PAYOUT_RECOVERY_INTERVAL_S)
            try:
                await resume_pending_payouts(self.context, older_than_ms=PAYOUT_RECOVERY_AGE_MS)
            except (WalletError, OSError) as exc:
                log.warning("payout recovery failed, will retry: %s", exc)
            except Exception:
                log.exception("payout recovery failed, will retry")

    async def stop(self) -> None:
        if self._recovery is not None:
            self._recovery.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._recovery
            self._recovery = None
        await self._http.stop()
        if self._agents is not None:
            await self._agents.stop()
            self._agents = None
        if self._nats is not None:
            with contextlib.suppress(nats.errors.Error):
                await self._nats.drain()
            self._nats = None
        if self._gateway is not None:
            await self._gateway.close()
            self._gateway = None
        if self._engine is not None:
            await self._engine.dispose()
            self._engine = None
        self._context = None

    async def __aenter__(self) -> PortalServer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()


class OfflineStripe:
    """localstripe and the Connect stand-in, on loopback ports, with fresh keys."""

    def __init__(self) -> None:
        self.local_stripe = LocalStripe()
        self.connect_state = OfflineConnect()
        self._connect_http = EmbeddedHttpServer()
        self.webhook_secret = "whsec_" + new_token(24)

    async def start(self) -> None:
        await self.local_stripe.start()
        try:
            self._connect_http.bind()
            self.connect_state.base_url = self._connect_http.url
            await self._connect_http.start(create_offline_connect_app(self.connect_state))
        except BaseException:
            await self.stop()
            raise

    @property
    def connect_url(self) -> str:
        return self._connect_http.url

    def settings(self) -> StripeSettings:
        return StripeSettings(
            secret_key=OFFLINE_SECRET_KEY,
            publishable_key=OFFLINE_PUBLISHABLE_KEY,
            webhook_secret=self.webhook_secret,
            api_base=self.local_stripe.url,
            connect_api_base=self.connect_url,
            js_url=self.local_stripe.js_url,
        )

    async def register_webhook(self, portal_url: str, /) -> None:
        await self.local_stripe.register_webhook(
            f"{portal_url}/stripe/webhook", secret=self.webhook_secret
        )

    async def stop(self) -> None:
        await self._connect_http.stop()
        await self.local_stripe.stop()

    async def __aenter__(self) -> OfflineStripe:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()
