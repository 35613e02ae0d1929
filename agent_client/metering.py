"""Metered calls: pay per call (or per thousand units) against a held ceiling.

The buyer's side is a :class:`MeteredSession`, opened from a provider's
signed :class:`~agent_client.protocol.MeteredOffer`. Each
:meth:`MeteredSession.call` sends one call to the provider directly (on the
provider's direct subject, the one counter-offers use), gets the output and
the units it consumed in a signed reply, and signs a new cumulative
:class:`~agent_client.protocol.UsageReceipt` for everything received so far.
The receipt goes to the provider at once, and again with the next call.

The provider's side is a :class:`MeteredDesk`, used through
:meth:`Agent.serve_metered <agent_client.agent.Agent.serve_metered>`: it
answers offer requests with signed offers, runs the handler for each call of
an open session (learned from the exchange), keeps the latest receipt of
each session, and claims against it (:meth:`MeteredDesk.claim`) whenever its
owner likes. A buyer whose receipts lag more than ``unpaid_units_max`` units
behind what it received gets no more calls until it signs.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import msgspec

from agent_client import limits, subjects
from agent_client.errors import AgentClientError, ExchangeError, SignatureRejected, exchange_error
from agent_client.keys import AgentKeys
from agent_client.protocol import (
    ClaimUsage,
    CloseMetered,
    Envelope,
    ErrorCode,
    ErrorReply,
    GetMetered,
    MeteredCall,
    MeteredCallReply,
    MeteredOffer,
    MeteredOfferReply,
    MeteredOfferRequest,
    MeteredReply,
    MeteredState,
    MeteredView,
    OpenMetered,
    UsageReceipt,
    json_encoder,
    price_of_units,
)
from agent_client.replies import expect_reply, open_reply, sign_reply
from agent_client.signing import (
    Clock,
    ReplayGuard,
    VerifiedDocument,
    make_header,
    open_envelope_struct,
    seal,
    verify_evidence,
    verify_request,
)
from agent_client.stored_results import Requester
from agent_client.transport import IncomingMessage, NatsConnection

__all__ = [
    "METERED_TYPES",
    "MeteredDesk",
    "MeteredHandler",
    "MeteredSession",
    "ReceivedMeteredOffer",
    "UnitsOf",
    "open_metered_session",
    "price_of_units",
    "request_metered_offer",
]

log = logging.getLogger(__name__)

# What one call consumed, from its input and output (default: one unit per call).
UnitsOf = Callable[[Any, Any], int]
MeteredHandler = Callable[[Any], Awaitable[Any]]
# Sessions a provider remembers at once (the oldest is forgotten first; it is
# asked for again from the exchange if its buyer calls again).
SESSIONS_REMEMBERED_MAX = 10_000
METERED_TYPES = (MeteredOfferRequest, MeteredCall, UsageReceipt)


@dataclass(frozen=True, slots=True)
class ReceivedMeteredOffer:
    """A provider's metered offer that passed every check, with its signed envelope."""

    offer: MeteredOffer
    envelope: Envelope

    @property
    def provider_id(self) -> str:
        return self.offer.header.issuer


async def request_metered_offer(
    connection: NatsConnection,
    keys: AgentKeys,
    provider_id: str,
    capability: str,
    /,
    *,
    clock: Clock,
    timeout_s: float,
) -> ReceivedMeteredOffer:
    """Ask a provider for its metered terms, directly; verify what comes back."""
    subject = subjects.negotiation(provider_id)
    request = MeteredOfferRequest(
        header=make_header(
            keys, audience=provider_id, subject=subject, lifetime_s=timeout_s, clock=clock
        ),
        capability=capability,
    )
    payload = json_encoder.encode(seal(request, keys))
    answer = await connection.request(subject, payload, timeout_s=timeout_s)
    _, reply = open_reply(
        answer,
        signer_id=provider_id,
        audience=keys.agent_id,
        request_subject=subject,
        request_payload=payload,
        clock=clock,
    )
    if isinstance(reply, ErrorReply):
        raise exchange_error(reply.code, reply.message)
    envelope = expect_reply(reply, MeteredOfferReply).offer
    offer = verify_evidence(
        open_envelope_struct(envelope),
        expected_type=MeteredOffer,
        audience=keys.agent_id,
        issuer=provider_id,
        expected_subject=subjects.metered_offers(capability),
        clock=clock,
        lifetime_max_s=limits.QUOTE_VALIDITY_MAX_S,
    ).document
    assert isinstance(offer, MeteredOffer)
    return ReceivedMeteredOffer(offer, envelope)


class MeteredSession:
    """The buyer's handle on an open metered session: call, sign, close."""

    def __init__(
        self,
        view: MeteredView,
        /,
        *,
        connection: NatsConnection,
        keys: AgentKeys,
        clock: Clock,
        request: Requester,
    ) -> None:
        self.view = view
        self._connection = connection
        self._keys = keys
        self._clock = clock
        self._request = request
        self.units_received = 0
        self._receipt: Envelope | None = None

    @property
    def contract_id(self) -> str:
        return self.view.contract_id

    @property
    def receipt(self) -> Envelope | None:
        """The latest receipt signed (for every unit received so far)."""
        return self._receipt

    async def call(self, input_value: Any, /, *, timeout_s: float = 30.0) -> Any:
        """One metered call: the provider's output (its units are then receipted)."""
        subject = subjects.negotiation(self.view.provider_id)
        call = MeteredCall(
            header=make_header(
                self._keys,
                audience=self.view.provider_id,
                subject=subject,
                lifetime_s=min(timeout_s, limits.REQUEST_LIFETIME_MAX_S),
                clock=self._clock,
            ),
            contract_id=self.contract_id,
            input=msgspec.Raw(json_encoder.encode(input_value)),
            receipt=self._receipt,
        )
        payload = json_encoder.encode(seal(call, self._keys))
        if len(payload) > limits.METERED_CALL_BYTES_MAX:
            raise AgentClientError("the call's input is too large for a metered call")
        answer = await self._connection.request(subject, payload, timeout_s=timeout_s)
        _, reply = open_reply(
            answer,
            signer_id=self.view.provider_id,
            audience=self._keys.agent_id,
            request_subject=subject,
            request_payload=payload,
            clock=self._clock,
        )
        if isinstance(reply, ErrorReply):
            raise exchange_error(reply.code, reply.message, contract_id=self.contract_id)
        result = expect_reply(reply, MeteredCallReply)
        await self._sign_receipt(self.units_received + result.units)
        return msgspec.json.decode(result.output)

    async def _sign_receipt(self, units: int) -> None:
        """Sign for ``units`` received in all, and hand the receipt to the provider."""
        self.units_received = units
        now_ms = self._clock.now_ms()
        # Claimable for the rest of the session and its claim window.
        valid_until_ms = self.view.expires_at_ms + limits.METERED_CLAIM_WINDOW_S * 1000
        receipt = UsageReceipt(
            header=make_header(
                self._keys,
                audience=self.view.provider_id,
                subject=subjects.metered(self.contract_id),
                lifetime_s=max(1.0, (valid_until_ms - now_ms) / 1000),
                clock=self._clock,
            ),
            contract_id=self.contract_id,
            units=units,
        )
        self._receipt = seal(receipt, self._keys)
        direct = subjects.negotiation(self.view.provider_id)
        await self._connection.publish(direct, json_encoder.encode(self._receipt))

    async def refresh(self) -> MeteredView:
        self.view = await metered_view_of(self._request, self.contract_id)
        return self.view

    async def close(self) -> MeteredView:
        """Stop: the provider has the claim window, then the rest returns to this buyer."""
        contract_id = self.contract_id
        reply = await self._request(
            CloseMetered, lambda header: CloseMetered(header=header, contract_id=contract_id)
        )
        self.view = expect_reply(reply, MeteredReply).metered
        return self.view


async def metered_view_of(request: Requester, contract_id: str, /) -> MeteredView:
    """The exchange's view of a session this agent is a party of."""
    reply = await request(
        GetMetered, lambda header: GetMetered(header=header, contract_id=contract_id)
    )
    return expect_reply(reply, MeteredReply).metered


async def open_metered_session(
    offer: ReceivedMeteredOffer,
    /,
    *,
    ceiling_millicredits: int,
    session_s: int,
    request: Requester,
) -> MeteredView:
    reply = await request(
        OpenMetered,
        lambda header: OpenMetered(
            header=header,
            offer=offer.envelope,
            ceiling_millicredits=ceiling_millicredits,
            session_s=session_s,
        ),
    )
    return expect_reply(reply, MeteredReply).metered


@dataclass(slots=True)
class _MeteredService:
    capability: str
    handler: MeteredHandler
    unit_price_millicredits: int
    units_per_price: int
    units_of: UnitsOf
    unpaid_units_max: int
    offer_validity_s: float


@dataclass(slots=True)
class _Usage:
    """What the provider knows of one session."""

    view: MeteredView
    delivered_units: int = 0
    receipted_units: int = 0
    receipt: Envelope | None = None


class MeteredDesk:
    """The provider's metered services over one agent's connection and keys."""

    def __init__(
        self,
        connection: NatsConnection,
        keys: AgentKeys,
        /,
        *,
        clock: Clock,
        request: Requester,
        replay_guard: ReplayGuard,
    ) -> None:
        self._connection = connection
        self._keys = keys
        self._clock = clock
        self._request = request
        self._replay_guard = replay_guard
        self._services: dict[str, _MeteredService] = {}
        self._usage: OrderedDict[str, _Usage] = OrderedDict()
        self.subject = subjects.negotiation(keys.agent_id)

    def add(
        self,
        capability: str,
        handler: MeteredHandler,
        /,
        *,
        unit_price_millicredits: int,
        units_per_price: int,
        units_of: UnitsOf,
        unpaid_units_max: int,
        offer_validity_s: float,
    ) -> None:
        if units_per_price not in limits.METERED_UNITS_PER_PRICE:
            raise AgentClientError("units_per_price is 1 (per call) or 1000 (per thousand)")
        if not 1 <= unit_price_millicredits <= limits.PRICE_MILLICREDITS_MAX:
            raise AgentClientError("unit_price_millicredits is out of range")
        if unpaid_units_max < 0:
            raise AgentClientError("unpaid_units_max is at least 0")
        self._services[capability] = _MeteredService(
            capability,
            handler,
            unit_price_millicredits,
            units_per_price,
            units_of,
            unpaid_units_max,
            offer_validity_s,
        )

    def latest_receipt(self, contract_id: str, /) -> Envelope | None:
        usage = self._usage.get(contract_id)
        return None if usage is None else usage.receipt

    async def on_message(self, message: IncomingMessage, opened: VerifiedDocument[Any], /) -> None:
        """An offer request or a call (answered), or a receipt (kept)."""
        document = opened.document
        if isinstance(document, UsageReceipt):
            await self._keep_receipt(opened)
            return
        if not message.reply:
            return
        try:
            verify_request(
                opened,
                subject=message.subject,
                subject_agent_id=None,
                clock=self._clock,
                replay_guard=self._replay_guard,
            )
            if document.header.audience != self._keys.agent_id:
                raise SignatureRejected(ErrorCode.WRONG_AUDIENCE, "addressed to someone else")
            if len(message.data) > limits.METERED_CALL_BYTES_MAX:
                raise _Refused(
                    ErrorCode.PAYLOAD_TOO_LARGE,
                    f"a metered call is at most {limits.METERED_CALL_BYTES_MAX} bytes",
                )
            if isinstance(document, MeteredOfferRequest):
                answer: Any = self._offer(document)
            else:
                answer = await self._call(document)
        except (SignatureRejected, _Refused) as exc:
            answer = ErrorReply(code=exc.code, message=exc.message)
        await self._connection.publish(
            message.reply,
            sign_reply(
                answer,
                keys=self._keys,
                audience=document.header.issuer,
                request_subject=message.subject,
                request_payload=message.data,
                clock=self._clock,
            ),
        )

    def _offer(self, request: MeteredOfferRequest) -> MeteredOfferReply:
        service = self._service(request.capability)
        offer = MeteredOffer(
            header=make_header(
                self._keys,
                audience=request.header.issuer,
                subject=subjects.metered_offers(service.capability),
                lifetime_s=service.offer_validity_s,
                clock=self._clock,
            ),
            capability=service.capability,
            unit_price_millicredits=service.unit_price_millicredits,
            units_per_price=1 if service.units_per_price == 1 else 1000,
        )
        return MeteredOfferReply(offer=seal(offer, self._keys))

    async def _call(self, call: MeteredCall) -> MeteredCallReply:
        usage = await self._session(call.contract_id, buyer_id=call.header.issuer)
        service = self._service(usage.view.capability)
        if call.receipt is not None:
            self._check_receipt(usage, call.receipt)
        unpaid = usage.delivered_units - usage.receipted_units
        if unpaid > service.unpaid_units_max:
            raise _Refused(ErrorCode.FORBIDDEN, f"{unpaid} units are not receipted yet")
        owed = price_of_units(
            usage.delivered_units,
            unit_price_millicredits=service.unit_price_millicredits,
            units_per_price=service.units_per_price,
        )
        if owed >= usage.view.ceiling_millicredits:
            raise _Refused(ErrorCode.BUDGET_EXCEEDED, "the session's ceiling is used up")
        input_value = msgspec.json.decode(call.input)
        output = await service.handler(input_value)
        units = service.units_of(input_value, output)
        usage.delivered_units += units
        return MeteredCallReply(output=msgspec.Raw(json_encoder.encode(output)), units=units)

    async def _session(self, contract_id: str, *, buyer_id: str) -> _Usage:
        usage = self._usage.get(contract_id)
        if usage is None:
            try:
                usage = _Usage(await metered_view_of(self._request, contract_id))
            except ExchangeError as exc:
                # Not this provider's session, or the exchange cannot say now.
                code = (
                    ErrorCode.NOT_FOUND
                    if exc.code == ErrorCode.NOT_FOUND
                    else ErrorCode.UNAVAILABLE
                )
                raise _Refused(code, "no such metered session here") from exc
            self._remember(contract_id, usage)
        if usage.view.buyer_id != buyer_id or usage.view.state is not MeteredState.OPEN:
            raise _Refused(ErrorCode.NOT_FOUND, "no open metered session of yours")
        return usage

    def _remember(self, contract_id: str, usage: _Usage) -> None:
        self._usage[contract_id] = usage
        while len(self._usage) > SESSIONS_REMEMBERED_MAX:
            self._usage.popitem(last=False)

    def _service(self, capability: str) -> _MeteredService:
        service = self._services.get(capability)
        if service is None:
            raise _Refused(ErrorCode.NOT_FOUND, f"no metered {capability} here")
        return service

    async def _keep_receipt(self, opened: VerifiedDocument[Any]) -> None:
        usage = self._usage.get(opened.document.contract_id)
        if usage is None:
            return  # a receipt of a session this provider never served: nothing owed
        try:
            self._check_receipt(usage, opened.envelope)
        except (SignatureRejected, _Refused) as exc:
            log.info("ignored a usage receipt: %s", exc)

    def _check_receipt(self, usage: _Usage, envelope: Envelope) -> None:
        """Keep ``envelope`` if it is the buyer's, for this session, and newer."""
        receipt = verify_evidence(
            open_envelope_struct(envelope),
            expected_type=UsageReceipt,
            audience=self._keys.agent_id,
            issuer=usage.view.buyer_id,
            expected_subject=subjects.metered(usage.view.contract_id),
            clock=self._clock,
            lifetime_max_s=limits.METERED_RECEIPT_LIFETIME_MAX_S,
        ).document
        assert isinstance(receipt, UsageReceipt)
        if receipt.contract_id != usage.view.contract_id:
            raise _Refused(ErrorCode.INVALID_REQUEST, "a receipt of another session")
        if receipt.units > usage.delivered_units:
            raise _Refused(ErrorCode.INVALID_REQUEST, "a receipt for units never delivered")
        if receipt.units > usage.receipted_units:
            usage.receipted_units, usage.receipt = receipt.units, envelope

    async def claim(self, contract_id: str, /) -> MeteredView:
        """Capture what the latest receipt of ``contract_id`` owes (beyond earlier claims)."""
        receipt = self.latest_receipt(contract_id)
        if receipt is None:
            raise AgentClientError(f"no receipt held for {contract_id}")
        reply = await self._request(
            ClaimUsage, lambda header: ClaimUsage(header=header, receipt=receipt)
        )
        return self.observe(expect_reply(reply, MeteredReply).metered)

    async def close(self, contract_id: str, /) -> MeteredView:
        """End the session now, claiming the latest receipt with it."""
        receipt = self.latest_receipt(contract_id)
        reply = await self._request(
            CloseMetered,
            lambda header: CloseMetered(
                header=header, contract_id=contract_id, final_receipt=receipt
            ),
        )
        return self.observe(expect_reply(reply, MeteredReply).metered)

    def observe(self, view: MeteredView, /) -> MeteredView:
        """The exchange's latest word on a session this provider serves (a reply, a notice)."""
        usage = self._usage.get(view.contract_id)
        if usage is not None:
            usage.view = view
        return view


class _Refused(Exception):
    """A call or offer request this provider refuses (answered as an error reply)."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(f"{code.value}: {message}")
        self.code = code.value
        self.message = message
