"""The signed-request service: how the exchange (and the portal) answer agents on NATS.

One adapter for every endpoint of both services. For each request, in order:

1. **Admission** (broker/admission.py), before any decoding: the subject's
   fourth token is the agent (only it may publish there), and an agent over
   its rate, its in-flight share or its protocol-error budget is refused
   with ``rate_limited`` (or, past a few answers a second, not answered).
   An agent that floods on regardless is reported to the ``evictor`` (the
   broker, which disconnects it and refuses its key for a while).
2. **Verification** (agent_client/signing.py): size, depth, envelope,
   subject, clock window, replay, signature, signer = subject's agent, the
   route's document kind and audience. A failure is answered with its code
   and charged to the agent's protocol-error budget; nothing is logged.
3. **The use case**, whose domain errors the caller's ``map_error`` turns
   into typed error replies; anything it does not map is ``internal``,
   logged in one line.
4. **The answer**, always signed by the service's key and bound to the
   request's exact bytes (agent_client/replies.py).

Every worker runs the endpoints in one queue group as a NATS micro service
(``$SRV.PING/INFO/STATS``). Admission and verification (CPU only) run in
the subscription's callback, message after message; the use cases (which
wait on the database) run as tasks, at most ``concurrency_max`` at once,
since nats-py runs one subscription's callbacks one at a time.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar, cast

import nats.errors
import nats.micro
from nats.aio.client import Client
from nats.micro.request import Request
from nats.micro.service import Service

from agent_client import limits as protocol_limits
from agent_client.errors import SignatureRejected
from agent_client.keys import AgentKeys
from agent_client.protocol import Document, ErrorCode, ErrorReply, Reply, endpoint_of
from agent_client.replies import ANY_AUDIENCE, sign_reply
from agent_client.signing import Clock, ReplayGuard, VerifiedDocument, open_envelope, verify_request
from agent_client.transport import flush_subscriptions
from broker.admission import AgentAdmission, Verdict
from broker.service_observer import NO_OBSERVER, NOT_ANSWERED, OK, RequestObserver

__all__ = ["AgentEvictor", "OpenRoute", "Route", "ServiceIdentity", "SignedRequestService"]

log = logging.getLogger(__name__)

# The request subjects of both services name the agent in this token:
# agentx.v2.x.<agent id>.<endpoint>, agentx.v2.portal.<agent id>.<name>.
_AGENT_TOKEN_INDEX = 3
# Refused requests handled between two returns to the event loop.
REFUSALS_BETWEEN_YIELDS = 64
# How much of an unexpected error's text one log line carries.
_LOGGED_ERROR_CHARS_MAX = 300

ErrorMap = Callable[[Exception], ErrorReply | None]
_D = TypeVar("_D", bound=Document)


class AgentEvictor(Protocol):
    """Disconnects an agent's connections and refuses its key for a while (the broker)."""

    async def evict(self, agent_id: str, /) -> None: ...


@dataclass(frozen=True, slots=True)
class Route(Generic[_D]):
    """One endpoint: the document it takes, where it listens, the use case answering.

    Its name is the document's tag: a new endpoint is one document type and
    one answer. The answer receives the document already verified and of
    its type.
    """

    document_type: type[_D]
    subject: str
    answer: Callable[[str, VerifiedDocument[_D]], Awaitable[Reply]]

    @property
    def name(self) -> str:
        return endpoint_of(self.document_type)


@dataclass(frozen=True, slots=True)
class OpenRoute:
    """An endpoint anyone connected may ask without signing (``info``): its answer is
    fixed, signed per request, to audience ``*``."""

    name: str
    subject: str
    reply: Reply
    # The request is the asker's nonce: shorter is no nonce, longer is junk.
    request_bytes_min: int
    request_bytes_max: int


@dataclass(frozen=True, slots=True)
class ServiceIdentity:
    name: str
    version: str
    description: str
    queue_group: str
    # The audience a request to this service names.
    audience: str


class SignedRequestService:
    """Serves ``routes`` on ``client``, answering as ``keys``."""

    def __init__(
        self,
        client: Client,
        keys: AgentKeys,
        /,
        *,
        identity: ServiceIdentity,
        routes: Sequence[Route[Any]],
        open_routes: Sequence[OpenRoute] = (),
        map_error: ErrorMap,
        admission: AgentAdmission,
        clock: Clock,
        concurrency_max: int,
        evictor: AgentEvictor | None = None,
        observer: RequestObserver = NO_OBSERVER,
    ) -> None:
        assert concurrency_max > 0
        self._client = client
        self._keys = keys
        self._identity = identity
        self._routes = tuple(routes)
        self._open_routes = tuple(open_routes)
        self._map_error = map_error
        self._admission = admission
        self._clock = clock
        self._replay_guard = ReplayGuard()
        self._slots = asyncio.Semaphore(concurrency_max)
        self._tasks: set[asyncio.Task[None]] = set()
        self._micro: Service | None = None
        # None: flooding agents are only refused (no broker in this process).
        self._evictor = evictor
        self._refused_in_a_row = 0
        # Counts and times every request (Prometheus, in a worker).
        self._observer = observer

    async def start(self) -> None:
        identity = self._identity
        self._micro = await nats.micro.add_service(
            self._client,
            name=identity.name,
            version=identity.version,
            description=identity.description,
            queue_group=identity.queue_group,
        )
        for open_route in self._open_routes:
            await self._micro.add_endpoint(
                name=open_route.name, subject=open_route.subject, handler=self._opener(open_route)
            )
        for route in self._routes:
            await self._micro.add_endpoint(
                # Micro endpoint names take no dots: contract.open is contract-open.
                name=route.name.replace(".", "-"),
                subject=route.subject,
                handler=self._receiver(route),
            )
        await flush_subscriptions(self._client)

    async def stop(self) -> None:
        """Stop taking requests and finish those being answered."""
        if self._micro is not None:
            await self._micro.stop()
            self._micro = None
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def _opener(self, route: OpenRoute) -> Callable[[Request], Awaitable[None]]:
        async def answer(request: Request) -> None:
            if not route.request_bytes_min <= len(request.data) <= route.request_bytes_max:
                return
            await self._respond(request, route.reply, ANY_AUDIENCE)

        return answer

    def _receiver(self, route: Route[Any]) -> Callable[[Request], Awaitable[None]]:
        async def receive(request: Request) -> None:
            tokens = request.subject.split(".")
            agent_id = tokens[_AGENT_TOKEN_INDEX] if len(tokens) > _AGENT_TOKEN_INDEX else ""
            verdict = self._admission.admit(agent_id, now_s=time.monotonic())
            if verdict is not Verdict.ADMIT:
                await self._refuse(request, route.name, agent_id, verdict)
                return
            try:
                # Checked here, before the next message is taken: a flood of
                # forgeries spends its agent's error budget at once, instead
                # of after a batch of tasks each admitted on the old budget.
                verified = self._verified(route, agent_id, request.subject, request.data)
            except SignatureRejected as exc:
                self._admission.protocol_error(agent_id, now_s=time.monotonic())
                self._admission.finished(agent_id)
                self._observer.request_refused(route.name, exc.code)
                await self._respond(request, _error(ErrorCode(exc.code), exc.message), agent_id)
                return
            await self._slots.acquire()
            self._run(self._answer(route, agent_id, request, verified))

        return receive

    async def _refuse(
        self, request: Request, endpoint: str, agent_id: str, verdict: Verdict
    ) -> None:
        refused_with = ErrorCode.RATE_LIMITED.value if verdict is Verdict.REFUSE else NOT_ANSWERED
        self._observer.request_refused(endpoint, refused_with)
        if verdict is Verdict.REFUSE:
            refusal = _error(ErrorCode.RATE_LIMITED, "too many requests; retry in a while")
            await self._respond(request, refusal, agent_id)
        elif verdict is Verdict.EVICT and self._evictor is not None:
            self._run(self._evictor.evict(agent_id))
        await self._yield_now_and_then()

    async def _yield_now_and_then(self) -> None:
        """Let the other subscriptions' messages run while a flood is being refused.

        nats-py hands one subscription's messages to its callback one after
        another without returning to the event loop while its queue is not
        empty, and a refusal awaits nothing that suspends: a flood on one
        endpoint would hold the loop until it is all refused.
        """
        self._refused_in_a_row += 1
        if self._refused_in_a_row >= REFUSALS_BETWEEN_YIELDS:
            self._refused_in_a_row = 0
            await asyncio.sleep(0)

    def _run(self, work: Awaitable[None]) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _answer(
        self, route: Route[_D], agent_id: str, request: Request, verified: VerifiedDocument[_D]
    ) -> None:
        started_s = time.perf_counter()
        try:
            reply = await self._use_case_reply(route, agent_id, request.subject, verified)
            await self._respond(request, reply, agent_id)
            code = reply.code if isinstance(reply, ErrorReply) else OK
            self._observer.request_answered(route.name, code, time.perf_counter() - started_s)
        except Exception as exc:
            log.error("could not answer on %s: %s", request.subject, _one_line(exc))
        finally:
            self._slots.release()
            self._admission.finished(agent_id)

    async def _use_case_reply(
        self, route: Route[_D], agent_id: str, subject: str, verified: VerifiedDocument[_D]
    ) -> Reply:
        try:
            return await route.answer(agent_id, verified)
        except Exception as exc:
            self._observer.use_case_raised(route.name, exc)
            mapped = self._map_error(exc)
            if mapped is not None:
                return mapped
            log.error("internal error on %s: %s", subject, _one_line(exc))
            return _error(ErrorCode.INTERNAL, "internal error")

    def _verified(
        self, route: Route[_D], agent_id: str, subject: str, data: bytes
    ) -> VerifiedDocument[_D]:
        verified = verify_request(
            open_envelope(data),
            subject=subject,
            subject_agent_id=agent_id,
            clock=self._clock,
            replay_guard=self._replay_guard,
        )
        document = verified.document
        if not isinstance(document, route.document_type):
            raise SignatureRejected(
                ErrorCode.WRONG_KIND, f"{route.name} takes {route.document_type.__name__}"
            )
        if document.header.audience != self._identity.audience:
            raise SignatureRejected(
                ErrorCode.WRONG_AUDIENCE,
                f"requests here are addressed to {self._identity.audience!r}",
            )
        # The type was just checked: the route's answer gets its own document type.
        return cast(VerifiedDocument[_D], verified)

    async def _respond(self, request: Request, reply: Reply, audience: str) -> None:
        payload = self._signed(request, reply, audience=audience)
        if len(payload) > protocol_limits.REPLY_BYTES_MAX:
            # A bug (every reply is bounded to fit); the client gets a typed error.
            log.error("an answer on %s is %d B, over the limit", request.subject, len(payload))
            too_large = _error(ErrorCode.INTERNAL, "the answer was too large to send")
            payload = self._signed(request, too_large, audience=audience)
        try:
            await request.respond(payload)
        except ValueError:
            return  # a request without a reply subject asked for no answer
        except nats.errors.Error as exc:
            log.warning("could not send the answer on %s: %s", request.subject, exc)

    def _signed(self, request: Request, reply: Reply, *, audience: str) -> bytes:
        return sign_reply(
            reply,
            keys=self._keys,
            audience=audience,
            request_subject=request.subject,
            request_payload=request.data,
            clock=self._clock,
        )


def _error(code: ErrorCode, message: str) -> ErrorReply:
    return ErrorReply(code=code.value, message=message)


def _one_line(exc: BaseException) -> str:
    return repr(exc).replace("\n", " ")[:_LOGGED_ERROR_CHARS_MAX]
