"""The portal's NATS endpoint where agents sign their link codes.

Agents call ``Agent.link_human(code)`` (or ``agentx link CODE --key FILE``),
which sends a signed ``portal.link`` document to
``agentx.v1.portal.<agent id>.link``. Every portal process serves it in one
queue group. The request is verified like any exchange request — subject,
clock window, replay, signature, and the agent id in the subject equal to
the signer — so only the holder of an agent's key can link that agent.
Each request gets a ``linked`` reply or an ``error`` reply with a stable code.
"""

from __future__ import annotations

import asyncio
import logging

import nats.micro
from nats.aio.client import Client
from nats.micro.request import Request
from nats.micro.service import Service

from agent_client.agent import PORTAL_AUDIENCE, PORTAL_LINK_SUBJECT_FORMAT
from agent_client.errors import SignatureRejected
from agent_client.protocol import (
    ErrorCode,
    ErrorReply,
    LinkedReply,
    LinkHuman,
    Reply,
    json_encoder,
)
from agent_client.signing import ReplayGuard, open_envelope, verify_request
from agent_client.transport import flush_subscriptions
from human_portal.context import PortalContext
from human_portal.errors import PortalError
from human_portal.linking import link_agent
from wallet import LedgerUnavailable

__all__ = ["LINK_QUEUE_GROUP", "LinkService", "link_subject_wildcard"]

log = logging.getLogger(__name__)

LINK_QUEUE_GROUP = "agentx-portal"
SERVICE_NAME = "agentx-portal"
SERVICE_VERSION = "0.1.0"
LINK_CONCURRENCY_MAX = 64


def link_subject_wildcard() -> str:
    return PORTAL_LINK_SUBJECT_FORMAT.format(agent_id="*")


def _agent_id_in_subject(subject: str) -> str | None:
    prefix, _, suffix = PORTAL_LINK_SUBJECT_FORMAT.partition("{agent_id}")
    if not (subject.startswith(prefix) and subject.endswith(suffix)):
        return None
    token = subject[len(prefix) : len(subject) - len(suffix)]
    return token if token and "." not in token else None


class LinkService:
    """Serves link requests on a NATS connection it is given (the caller owns it)."""

    def __init__(self, client: Client, context: PortalContext, /) -> None:
        self._client = client
        self._context = context
        self._replay_guard = ReplayGuard()
        self._slots = asyncio.Semaphore(LINK_CONCURRENCY_MAX)
        self._micro: Service | None = None

    async def start(self) -> None:
        self._micro = await nats.micro.add_service(
            self._client,
            name=SERVICE_NAME,
            version=SERVICE_VERSION,
            description="Agent Exchange human portal: agents link to their humans",
            queue_group=LINK_QUEUE_GROUP,
        )
        await self._micro.add_endpoint(
            name="link", subject=link_subject_wildcard(), handler=self._handle
        )
        await flush_subscriptions(self._client)

    async def stop(self) -> None:
        if self._micro is not None:
            await self._micro.stop()
            self._micro = None

    async def _handle(self, request: Request) -> None:
        async with self._slots:
            reply = await self.reply_for(request.subject, request.data)
            await request.respond(json_encoder.encode(reply))

    async def reply_for(self, subject: str, data: bytes) -> Reply:
        """Verify one link request and link the agent, or say why not."""
        try:
            verified = verify_request(
                open_envelope(data),
                subject=subject,
                subject_agent_id=_agent_id_in_subject(subject),
                clock=self._context.clock,
                replay_guard=self._replay_guard,
            )
            document = verified.document
            if not isinstance(document, LinkHuman):
                return _error(ErrorCode.WRONG_KIND, "the link endpoint takes portal.link")
            if document.header.audience != PORTAL_AUDIENCE:
                return _error(ErrorCode.WRONG_AUDIENCE, "link requests are addressed to 'portal'")
            link = await link_agent(self._context, document.header.issuer, document.code)
            return LinkedReply(agent_id=link.agent_id, label=link.label)
        except SignatureRejected as exc:
            return _error(ErrorCode(exc.code), exc.message)
        except PortalError as exc:
            return _error(_code_for(exc), exc.message)
        except LedgerUnavailable as exc:
            log.warning("database unavailable for a link request: %s", exc)
            return _error(ErrorCode.UNAVAILABLE, "the portal is unavailable, retry later")
        except Exception:
            log.exception("internal error on %s", subject)
            return _error(ErrorCode.INTERNAL, "internal error")


def _code_for(error: PortalError) -> ErrorCode:
    if error.code == "link_rejected":
        return ErrorCode.LINK_CODE_INVALID
    if error.code == "conflict":
        return ErrorCode.FORBIDDEN
    return ErrorCode.INVALID_REQUEST


def _error(code: ErrorCode, message: str) -> ErrorReply:
    return ErrorReply(code=code.value, message=message)
