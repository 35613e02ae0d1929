"""The portal as ``agentx up`` runs it: real Stripe when keys are set, else offline.

With ``STRIPE_SECRET_KEY``, ``STRIPE_PUBLISHABLE_KEY`` and
``STRIPE_WEBHOOK_SECRET`` in the environment the portal talks to Stripe
(forward webhooks to ``<portal>/stripe/webhook``, e.g. with ``stripe listen
--forward-to``). Without them it starts localstripe and the Connect
stand-in on loopback ports, and registers its webhook with localstripe.
"""

from __future__ import annotations

from agent_client.keys import AgentKeys
from broker.signed_service import AgentEvictor
from human_portal.config import PortalConfig, StripeSettings, stripe_settings_from_environment
from human_portal.portal_server import OfflineStripe, PortalServer

__all__ = ["DEFAULT_PORTAL_PORT", "EmbeddedPortal"]

DEFAULT_PORTAL_PORT = 8000


class EmbeddedPortal:
    def __init__(
        self,
        *,
        database_url: str,
        nats_url: str,
        operator_keys: AgentKeys,
        portal_keys: AgentKeys,
        evictor: AgentEvictor | None = None,
        host: str = "127.0.0.1",
        port: int = DEFAULT_PORTAL_PORT,
        operator_emails: frozenset[str] = frozenset(),
        stripe: StripeSettings | None = None,
    ) -> None:
        self._database_url = database_url
        self._nats_url = nats_url
        self._operator_keys = operator_keys
        self._portal_keys = portal_keys
        self._evictor = evictor
        self._host = host
        self._port = port
        self._operator_emails = frozenset(email.strip().lower() for email in operator_emails)
        self._stripe = stripe
        self.offline: OfflineStripe | None = None
        self.server: PortalServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None, "the portal is not started"
        return self.server.url

    @property
    def stripe_mode(self) -> str:
        if self.offline is not None:
            return f"offline: localstripe at {self.offline.local_stripe.url}"
        return "Stripe (keys from the environment)"

    async def start(self) -> None:
        try:
            settings = self._stripe or stripe_settings_from_environment()
            if settings is None:
                self.offline = OfflineStripe()
                await self.offline.start()
                settings = self.offline.settings()
            config = PortalConfig(
                database_url=self._database_url,
                stripe=settings,
                nats_url=self._nats_url,
                operator_emails=self._operator_emails,
            )
            self.server = PortalServer(
                config,
                host=self._host,
                port=self._port,
                operator_keys=self._operator_keys,
                portal_keys=self._portal_keys,
                evictor=self._evictor,
            )
            await self.server.start()
            if self.offline is not None:
                await self.offline.register_webhook(self.server.url)
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.stop()
            self.server = None
        if self.offline is not None:
            await self.offline.stop()
            self.offline = None
