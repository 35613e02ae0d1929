"""The portal's NATS endpoints for agents: linking to a human, and cash-out.

* ``agentx.v1.portal.<agent id>.link`` takes a signed ``portal.link``
  (``Agent.link_human(code)``, ``agentx link CODE --key FILE``) and links the
  agent to the account that issued the one-time code;
* ``agentx.v1.portal.<agent id>.cash_out`` takes a signed ``portal.cash_out``
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

import asyncio
import hashlib
import logging
from collections.abc import Awaitable, Callable

import nats.micro
from nats.aio.client import Client
from nats.micro.request import Request
from nats.micro.service import Service

from agent_client.errors import SignatureRejected
from agent_client.protocol import (
    CashOut,
    CashOutReply,
    Document,
    ErrorCode,
    ErrorReply,
    LinkedReply,
    LinkHuman,
    Reply,
    json_encoder,
)
from agent_client.signing import ReplayGuard, open_envelope, verify_request
from agent_client.subjects import (
    PORTAL_AUDIENCE,
    PORTAL_CASH_OUT_SUBJECT_FORMAT,
    PORTAL_LINK_SUBJECT_FORMAT,
)
from agent_client.transport import flush_subscriptions
from human_portal.accounts import user_by_id
from human_portal.context import PortalContext
from human_portal.errors import PortalError
from human_portal.linking import link_agent, link_of
from human_portal.payouts import request_cash_out
from wallet import LedgerUnavailable

__all__ = ["AGENT_SERVICE_QUEUE_GROUP", "AgentService"]

log = logging.getLogger(__name__)

AGENT_SERVICE_QUEUE_GROUP = "agentx-portal"
SERVICE_NAME = "agentx-portal"
SERVICE_VERSION = "0.1.0"
REQUEST_CONCURRENCY_MAX = 64

_Handler = Callable[[Document], Awaitable[Reply]]

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


def _agent_id_in_subject(subject: str, subject_format: str) -> str | None:
    prefix, _, suffix = subject_format.partition("{agent_id}")
    if not (subject.startswith(prefix) and subject.endswith(suffix)):
        return None
    token = subject[len(prefix) : len(subject) - len(suffix)]
    return token if token and "." not in token else None


class AgentService:
    """Serves agents' portal requests on a NATS connection the caller owns."""

    def __init__(self, client: Client, context: PortalContext, /) -> None:
        self._client = client
        self._context = context
        self._replay_guard = ReplayGuard()
        self._slots = asyncio.Semaphore(REQUEST_CONCURRENCY_MAX)
        self._micro: Service | None = None
        self._routes: dict[str, tuple[type[Document], _Handler]] = {
            PORTAL_LINK_SUBJECT_FORMAT: (LinkHuman, self._link),
            PORTAL_CASH_OUT_SUBJECT_FORMAT: (CashOut, self._cash_out),
        }

    async def start(self) -> None:
        self._micro = await nats.micro.add_service(
            self._client,
            name=SERVICE_NAME,
            version=SERVICE_VERSION,
            description="Agent Exchange human portal: agents link to their humans, cash out",
            queue_group=AGENT_SERVICE_QUEUE_GROUP,
        )
        for subject_format in self._routes:
            name = subject_format.rsplit(".", 1)[-1].replace("_", "-")
            await self._micro.add_endpoint(
                name=name,
                subject=subject_format.format(agent_id="*"),
                handler=self._handler(subject_format),
            )
        await flush_subscriptions(self._client)

    async def stop(self) -> None:
        if self._micro is not None:
            await self._micro.stop()
            self._micro = None

    def _handler(self, subject_format: str) -> Callable[[Request], Awaitable[None]]:
        async def handle(request: Request) -> None:
            async with self._slots:
                reply = await self.reply_for(subject_format, request.subject, request.data)
                await request.respond(json_encoder.encode(reply))

        return handle

    async def reply_for(self, subject_format: str, subject: str, data: bytes) -> Reply:
        """Verify one request and answer it, or say why not."""
        expected_type, handler = self._routes[subject_format]
        try:
            verified = verify_request(
                open_envelope(data),
                subject=subject,
                subject_agent_id=_agent_id_in_subject(subject, subject_format),
                clock=self._context.clock,
                replay_guard=self._replay_guard,
            )
            document = verified.document
            if not isinstance(document, expected_type):
                return _error(ErrorCode.WRONG_KIND, f"this endpoint takes {expected_type.__name__}")
            if document.header.audience != PORTAL_AUDIENCE:
                return _error(ErrorCode.WRONG_AUDIENCE, "portal requests are addressed to 'portal'")
            return await handler(document)
        except SignatureRejected as exc:
            return _error(ErrorCode(exc.code), exc.message)
        except PortalError as exc:
            return _error(_CODES.get(exc.code, ErrorCode.INVALID_REQUEST), exc.message)
        except LedgerUnavailable as exc:
            log.warning("database unavailable for %s: %s", subject, exc)
            return _error(ErrorCode.UNAVAILABLE, "the portal is unavailable, retry later")
        except Exception:
            log.exception("internal error on %s", subject)
            return _error(ErrorCode.INTERNAL, "internal error")

    async def _link(self, document: Document) -> Reply:
        assert isinstance(document, LinkHuman)
        link = await link_agent(self._context, document.header.issuer, document.code)
        return LinkedReply(agent_id=link.agent_id, label=link.label)

    async def _cash_out(self, document: Document) -> Reply:
        assert isinstance(document, CashOut)
        agent_id = document.header.issuer
        link = await self._context.read(lambda connection: link_of(connection, agent_id))
        if link is None:
            return _error(ErrorCode.NOT_FOUND, "this agent is not linked to a human")
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


def _error(code: ErrorCode, message: str) -> ErrorReply:
    return ErrorReply(code=code.value, message=message)
