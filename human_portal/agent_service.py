"""The portal's NATS endpoints for agents: linking to a human, and cash-out.

* ``agentx.v2.portal.<agent id>.link`` takes a signed ``portal.link``
  (``Agent.link_human(code)``, ``agentx link CODE --key FILE``) and links the
  agent to the account that issued the one-time code;
* ``agentx.v2.portal.<agent id>.cash_out`` takes a signed ``portal.cash_out``
  (``Agent.cash_out(credits)``): with its human's standing permission, the
  agent's credits are paid out to the human's Stripe account. Its
  ``request_id`` names the payout, so a retry returns the first one.

Every portal process serves both in one queue group. Each request is
verified like an exchange request — subject, clock window, replay,
signature, and the agent id in the subject equal to the signer — so only
the holder of an agent's key can link it or cash it out. Each gets a result
or an ``error`` reply with a stable code.
"""

from __future__ import annotations

import hashlib
import logging

from nats.aio.client import Client

from agent_client.keys import AgentKeys
from agent_client.protocol import (
    CashOut,
    CashOutReply,
    ErrorCode,
    ErrorReply,
    LinkedReply,
    LinkHuman,
    Reply,
)
from agent_client.signing import VerifiedDocument
from agent_client.subjects import (
    PORTAL_AUDIENCE,
    PORTAL_CASH_OUT_SUBJECT_FORMAT,
    PORTAL_LINK_SUBJECT_FORMAT,
)
from broker.admission import DEFAULT_ADMISSION, AgentAdmission
from broker.signed_service import AgentEvictor, Route, ServiceIdentity, SignedRequestService
from human_portal.accounts import user_by_id
from human_portal.errors import PortalError
from human_portal.linking import link_agent, link_of
from human_portal.payouts import request_cash_out
from human_portal.portal_context import PortalContext
from wallet import LedgerUnavailable

__all__ = ["AGENT_SERVICE_QUEUE_GROUP", "AgentService", "map_portal_error"]

log = logging.getLogger(__name__)

AGENT_SERVICE_QUEUE_GROUP = "agentx-portal"
SERVICE = ServiceIdentity(
    name="agentx-portal",
    version="0.2.0",
    description="Agent Exchange human portal: agents link to their humans, cash out",
    queue_group=AGENT_SERVICE_QUEUE_GROUP,
    audience=PORTAL_AUDIENCE,
)
REQUEST_CONCURRENCY_MAX = 64

# Portal errors map onto the wire's stable codes.
_CODES = {
    "link_rejected": ErrorCode.LINK_CODE_INVALID,
    "conflict": ErrorCode.FORBIDDEN,
    "permission_denied": ErrorCode.FORBIDDEN,
    "not_found": ErrorCode.NOT_FOUND,
    "insufficient_funds": ErrorCode.INSUFFICIENT_FUNDS,
    "agent_frozen": ErrorCode.AGENT_FROZEN,
    "payment_provider_failed": ErrorCode.UNAVAILABLE,
}


def map_portal_error(exc: Exception, /) -> ErrorReply | None:
    """The wire error for a refusal of the portal; None for a bug."""
    if isinstance(exc, PortalError):
        code = _CODES.get(exc.code, ErrorCode.INVALID_REQUEST)
        return ErrorReply(code=code.value, message=exc.message)
    if isinstance(exc, LedgerUnavailable):
        log.warning("database unavailable: %s", exc)
        return ErrorReply(
            code=ErrorCode.UNAVAILABLE.value, message="the portal is unavailable, retry later"
        )
    return None


class AgentService:
    """Serves agents' portal requests on a NATS connection the caller owns, signed
    with the portal's key (agents learn its id from the exchange's ``info``)."""

    def __init__(
        self,
        client: Client,
        keys: AgentKeys,
        context: PortalContext,
        /,
        *,
        evictor: AgentEvictor | None = None,
    ) -> None:
        self._context = context
        self._service = SignedRequestService(
            client,
            keys,
            identity=SERVICE,
            routes=[
                Route(LinkHuman, PORTAL_LINK_SUBJECT_FORMAT.format(agent_id="*"), self._link),
                Route(CashOut, PORTAL_CASH_OUT_SUBJECT_FORMAT.format(agent_id="*"), self._cash_out),
            ],
            map_error=map_portal_error,
            admission=AgentAdmission(DEFAULT_ADMISSION),
            clock=context.clock,
            concurrency_max=REQUEST_CONCURRENCY_MAX,
            evictor=evictor,
        )

    async def start(self) -> None:
        await self._service.start()

    async def stop(self) -> None:
        await self._service.stop()

    async def _link(self, agent_id: str, verified: VerifiedDocument[LinkHuman]) -> Reply:
        document = verified.document
        link = await link_agent(self._context, agent_id, document.code)
        return LinkedReply(agent_id=link.agent_id, label=link.label)

    async def _cash_out(self, agent_id: str, verified: VerifiedDocument[CashOut]) -> Reply:
        document = verified.document
        link = await self._context.read(lambda connection: link_of(connection, agent_id))
        if link is None:
            return ErrorReply(
                code=ErrorCode.NOT_FOUND.value, message="this agent is not linked to a human"
            )
        owner = await self._context.read(lambda connection: user_by_id(connection, link.user_id))
        assert owner is not None
        # The agent's request id names the payout: a retry finds the first one.
        digest = hashlib.sha256(f"{agent_id}:{document.request_id}".encode()).hexdigest()
        payout = await request_cash_out(
            self._context,
            owner,
            agent_id,
            document.credits,
            requested_by="agent",
            payout_id=f"po_agent_{digest[:32]}",
        )
        return CashOutReply(
            payout_id=payout.payout_id,
            status=payout.status.value,
            credits=payout.credits,
            gross_cents=payout.gross_cents,
            fee_cents=payout.fee_cents,
            net_cents=payout.net_cents,
            failure_reason=payout.failure_reason,
        )
