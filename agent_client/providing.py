"""The provider's half of an agent: answer RFQs, run hired tasks, deliver their results.

:class:`ProviderDesk` is used through :meth:`Agent.serve
<agent_client.agent.Agent.serve>` and :meth:`Agent.deliver
<agent_client.agent.Agent.deliver>`. It quotes (or declines) each RFQ for
a served capability, answers counter-offers through its
:class:`~agent_client.negotiation.OfferDesk`, runs the handler when the
exchange says the price is held, and delivers the result, retrying what
may pass later until the delivery deadline. Requests to the exchange go
through the agent's one signed request path (a
:data:`~agent_client.stored_results.Requester`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import msgspec
from nats.aio.subscription import Subscription

from agent_client import limits, subjects
from agent_client.errors import (
    AgentClientError,
    ExchangeError,
    RequestTimeout,
    SignatureRejected,
    TaskDeclined,
)
from agent_client.keys import AgentKeys
from agent_client.metering import METERED_TYPES, MeteredDesk
from agent_client.negotiation import RFQ_AUDIENCE, OfferDesk
from agent_client.protocol import (
    JSON_NULL,
    CancelContract,
    ContractOpenedNotice,
    ContractRecord,
    ContractReply,
    ContractView,
    Decline,
    DeclineCode,
    Deliver,
    Envelope,
    Header,
    Quote,
    Rfq,
    json_encoder,
)
from agent_client.replies import expect_reply
from agent_client.sealing import seal_to
from agent_client.signing import (
    Clock,
    ReplayGuard,
    b64encode,
    make_header,
    open_envelope,
    seal,
    sha256_hex,
    verify_request,
)
from agent_client.stored_results import Requester, store_result
from agent_client.strategies import ProviderStrategy
from agent_client.transport import IncomingMessage, NatsConnection

__all__ = ["Pricing", "ProviderDesk", "TaskHandler"]

log = logging.getLogger(__name__)

TaskHandler = Callable[[Any], Awaitable[Any]]
# A fixed price, or a function of the RFQ that returns a price or None to decline.
Pricing = int | Callable[[Rfq], int | None]

UNSERVED_CONTRACTS_MAX = 1_000
# Deliveries that may pass later are retried, waiting twice as long each time
# between these bounds, until the deadline (or this many attempts).
DELIVERY_RETRY_WAIT_MIN_S = 0.5
DELIVERY_RETRY_WAIT_MAX_S = 15.0
DELIVERY_ATTEMPTS_MAX = 1_000


@dataclass(slots=True)
class _Service:
    capability: str
    handler: TaskHandler
    pricing: Pricing
    subscription: Subscription | None = None
    quote_validity_s: float = limits.QUOTE_VALIDITY_DEFAULT_S


class ProviderDesk:
    """Serves capabilities over one agent's connection and keys."""

    def __init__(
        self,
        connection: NatsConnection,
        keys: AgentKeys,
        /,
        *,
        clock: Clock,
        request: Requester,
        verify_record: Callable[[Envelope], ContractRecord],
        handler_concurrency_max: int,
    ) -> None:
        self._connection = connection
        self._keys = keys
        self._clock = clock
        self._request = request
        self._verify_record = verify_record
        self._handler_concurrency_max = handler_concurrency_max
        self._replay_guard = ReplayGuard()
        self._offer_desk = OfferDesk(connection, keys, clock=clock, replay_guard=self._replay_guard)
        self.metered = MeteredDesk(
            connection, keys, clock=clock, request=request, replay_guard=self._replay_guard
        )
        self._listening_direct = False
        self._services: dict[str, _Service] = {}
        self._running: set[asyncio.Task[None]] = set()
        self._hired_before_serving: dict[str, list[ContractOpenedNotice]] = {}
        self._closed = False

    async def close(self, *, grace_s: float) -> None:
        """Stop retrying deliveries; hired tasks in flight get ``grace_s`` to deliver."""
        self._closed = True
        if self._running:
            _, pending = await asyncio.wait(self._running, timeout=grace_s)
            for task in pending:
                task.cancel()

    async def serve(
        self,
        capability: str,
        handler: TaskHandler,
        /,
        *,
        pricing: Pricing,
        negotiation: ProviderStrategy | None,
        quote_validity_s: float,
    ) -> None:
        """See :meth:`Agent.serve <agent_client.agent.Agent.serve>`."""
        if capability in self._services:
            raise AgentClientError(f"already serving {capability}")
        if not 0 < quote_validity_s <= limits.QUOTE_VALIDITY_MAX_S:
            raise AgentClientError(
                f"quote_validity_s must be within {limits.QUOTE_VALIDITY_MAX_S} s"
            )
        if negotiation is not None:
            await self.listen_direct()
            self._offer_desk.add_strategy(
                capability, negotiation, quote_validity_s=quote_validity_s
            )
        service = _Service(capability, handler, pricing, quote_validity_s=quote_validity_s)
        self._services[capability] = service
        service.subscription = await self._connection.subscribe(
            subjects.rfq(capability),
            self._answer_rfq,
            concurrency_max=self._handler_concurrency_max,
        )
        for notice in self._hired_before_serving.pop(capability, []):
            self.start_performing(notice)

    async def listen_direct(self) -> None:
        """Take messages on this agent's direct subject: counter-offers, walk-aways,
        metered offer requests, calls and receipts (one subscription for all)."""
        if self._listening_direct:
            return
        self._listening_direct = True
        await self._connection.subscribe(
            subjects.negotiation(self._keys.agent_id),
            self._on_direct,
            concurrency_max=self._handler_concurrency_max,
        )

    async def _on_direct(self, message: IncomingMessage) -> None:
        try:
            opened = open_envelope(message.data)
        except SignatureRejected as exc:
            log.info("ignored a message on %s: %s", message.subject, exc)
            return
        if isinstance(opened.document, METERED_TYPES):
            await self.metered.on_message(message, opened)
        else:
            await self._offer_desk.on_message(message)

    # --- quoting ------------------------------------------------------------------

    async def _answer_rfq(self, message: IncomingMessage) -> None:
        if not message.reply:
            return
        try:
            opened = verify_request(
                open_envelope(message.data),
                subject=message.subject,
                subject_agent_id=None,
                clock=self._clock,
                replay_guard=self._replay_guard,
            )
        except SignatureRejected as exc:
            log.info("ignored an RFQ on %s: %s", message.subject, exc)
            return
        rfq = opened.document
        if not isinstance(rfq, Rfq) or rfq.capability not in self._services:
            return
        if rfq.header.audience != RFQ_AUDIENCE:
            log.info("ignored an RFQ not addressed to providers")
            return
        if rfq.quote_deadline_ms is not None and rfq.quote_deadline_ms <= self._clock.now_ms():
            log.info("ignored an RFQ past its quote deadline")
            return
        response = self._quote_or_decline(rfq, self._services[rfq.capability])
        await self._connection.publish(message.reply, json_encoder.encode(response))

    def _quote_or_decline(self, rfq: Rfq, service: _Service) -> Envelope:
        pricing = service.pricing
        price = pricing if isinstance(pricing, int) else pricing(rfq)
        if price is not None:
            price = self._offer_desk.opening_price(rfq, price)
        if price is None or price > rfq.budget_millicredits:
            code = DeclineCode.DECLINED if price is None else DeclineCode.OVER_BUDGET
            reason = "declined by pricing" if price is None else "over the budget"
            header = self._header(rfq, lifetime_s=limits.DECLINE_LIFETIME_S)
            decline = Decline(header=header, rfq_id=rfq.rfq_id, reason=reason, code=code)
            return seal(decline, self._keys)
        header = self._header(rfq, lifetime_s=service.quote_validity_s)
        quote = Quote(
            header=header,
            rfq_id=rfq.rfq_id,
            capability=rfq.capability,
            price_millicredits=price,
            delivery_deadline_ms=header.issued_at_ms + rfq.delivery_within_s * 1000,
        )
        envelope = seal(quote, self._keys)
        if self._offer_desk.negotiates(rfq.capability):
            self._offer_desk.remember(rfq, envelope, quote)
        return envelope

    def _header(self, rfq: Rfq, *, lifetime_s: float) -> Header:
        """The header of an answer to ``rfq``: for its buyer, on its subject."""
        return make_header(
            self._keys,
            audience=rfq.header.issuer,
            subject=subjects.rfq(rfq.capability),
            lifetime_s=lifetime_s,
            clock=self._clock,
        )

    # --- hired tasks ----------------------------------------------------------------

    def start_performing(self, notice: ContractOpenedNotice) -> None:
        """Run a hired task in the background (the notice is acknowledged at once)."""
        task = asyncio.create_task(self._perform_logged(notice))
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    async def _perform_logged(self, notice: ContractOpenedNotice) -> None:
        try:
            await self._perform(notice)
        except Exception:
            log.exception("could not perform a hired task")

    async def _perform(self, notice: ContractOpenedNotice) -> None:
        record = self._verify_record(notice.record)
        if record.provider_id != self._keys.agent_id:
            log.warning("ignored a contract not meant for this agent: %s", record.contract_id)
            return
        service = self._services.get(record.capability)
        if service is None:
            # Hired while offline: the notice arrived on connect, before
            # serve(); it runs as soon as the capability is served again.
            self._hired_before_serving.setdefault(record.capability, []).append(notice)
            del self._hired_before_serving[record.capability][:-UNSERVED_CONTRACTS_MAX]
            return
        try:
            result = await service.handler(msgspec.json.decode(notice.task))
        except TaskDeclined as declined:
            await self._give_back(record, declined.reason)
            return
        seal_for = record.buyer_id if notice.seal_result else None
        await self.deliver_until_deadline(record, result, seal_for=seal_for)

    async def _give_back(self, record: ContractRecord, reason: str) -> None:
        """Cancel a contract the handler declined: the buyer is refunded at once."""
        log.info("declined %s: %s", record.contract_id, reason)
        reply = await self._request(
            CancelContract,
            lambda header: CancelContract(
                header=header,
                contract_id=record.contract_id,
                reason=reason[: limits.TEXT_LENGTH_MAX],
            ),
        )
        expect_reply(reply, ContractReply)

    async def deliver_until_deadline(
        self, record: ContractRecord, result: Any, *, seal_for: str | None
    ) -> None:
        """Deliver, retrying what may pass on a later try until the delivery deadline.

        Finished work must not turn into a refund because one request was
        lost: a timeout, a worker that was restarting (``unavailable``), a
        burst over this agent's rate (``rate_limited``): every error whose
        ``should_retry`` is true. Delivery is idempotent at the exchange, so
        a retry of a delivery that did land is answered with the contract
        as it stands.
        """
        wait_s = DELIVERY_RETRY_WAIT_MIN_S
        for _ in range(DELIVERY_ATTEMPTS_MAX):
            try:
                await self.deliver(record.contract_id, result, seal_for=seal_for)
                return
            except (RequestTimeout, SignatureRejected, ExchangeError) as exc:
                if isinstance(exc, ExchangeError) and not exc.should_retry:
                    raise
                left_s = (record.delivery_deadline_ms - self._clock.now_ms()) / 1000
                if left_s <= wait_s or self._closed:
                    raise
                log.info("delivery of %s not confirmed (%s); retrying", record.contract_id, exc)
            await asyncio.sleep(wait_s)
            wait_s = min(wait_s * 2, DELIVERY_RETRY_WAIT_MAX_S)

    async def deliver(
        self, contract_id: str, result: Any, /, *, seal_for: str | None = None
    ) -> ContractView:
        """See :meth:`Agent.deliver <agent_client.agent.Agent.deliver>`."""
        result_bytes = json_encoder.encode(result)
        if seal_for is not None:
            ciphertext = seal_to(seal_for, result_bytes)
            result_bytes = json_encoder.encode(b64encode(ciphertext))
        reference = None
        if len(result_bytes) > limits.RESULT_BYTES_MAX:
            reference = await store_result(self._request, contract_id, result_bytes)
        reply = await self._request(
            Deliver,
            lambda header: Deliver(
                header=header,
                contract_id=contract_id,
                result_sha256=sha256_hex(result_bytes),
                result=JSON_NULL if reference else msgspec.Raw(result_bytes),
                result_ref=reference,
                sealed=seal_for is not None,
            ),
        )
        return expect_reply(reply, ContractReply).contract
