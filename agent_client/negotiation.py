"""Negotiation on the wire: calls for quotes, counter-offers, walking away.

Two halves, both used through :class:`~agent_client.agent.Agent`:

* :class:`BuyerDesk` publishes an RFQ and collects verified quotes and
  declines (ranked by a :class:`~agent_client.strategies.Ranking`), sends
  counter-offers to one provider as NATS requests on
  ``agentx.v2.agent.<provider>.negotiate`` and checks the answer, and runs a
  whole negotiation with a :class:`~agent_client.strategies.BuyerStrategy`.
* :class:`OfferDesk` is the provider's side: it remembers its latest offer
  in each negotiation (bounded), and answers each counter-offer with a quote
  of the next round or a signed decline with a stable code.

Each quote of round n > 0 names the hash of the counter-offer it answers,
and each counter-offer names the hash of the quote it counters; the buyer
keeps that chain and the exchange checks it when the quote is accepted.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, replace

from nats.aio.subscription import Subscription

from agent_client import limits, subjects
from agent_client.errors import (
    ExchangeError,
    NegotiationError,
    NoDeal,
    OfferDeclined,
    RequestTimeout,
    SignatureRejected,
)
from agent_client.keys import AgentKeys
from agent_client.offers import QuoteCollection, QuoteRequest, ReceivedDecline, ReceivedQuote
from agent_client.protocol import (
    Counter,
    Decline,
    DeclineCode,
    Envelope,
    ErrorCode,
    Quote,
    Reject,
    Rfq,
    json_encoder,
)
from agent_client.signing import (
    Clock,
    ReplayGuard,
    b64decode,
    make_header,
    new_nonce,
    open_envelope,
    seal,
    sha256_hex,
    verify_evidence,
    verify_request,
)
from agent_client.strategies import (
    Accept,
    BuyerSituation,
    BuyerStrategy,
    CounterOffer,
    CounterSituation,
    Propose,
    ProviderStrategy,
    Ranking,
    WalkAway,
    rank_quotes,
)
from agent_client.transport import IncomingMessage, NatsConnection

__all__ = ["RFQ_AUDIENCE", "BuyerDesk", "OfferBook", "OfferDesk"]

log = logging.getLogger(__name__)

RFQ_AUDIENCE = "providers"


class BuyerDesk:
    """The buyer's half of negotiation, over one agent's connection and keys."""

    def __init__(self, connection: NatsConnection, keys: AgentKeys, /, *, clock: Clock) -> None:
        self._connection = connection
        self._keys = keys
        self._clock = clock
        self.agent_id = keys.agent_id

    # --- call for quotes ------------------------------------------------------------

    async def call_for_quotes(
        self,
        request: QuoteRequest,
        /,
        *,
        ranking: Ranking = rank_quotes,
        reputation: Mapping[str, float] | None = None,
    ) -> QuoteCollection:
        """Publish an RFQ; collect answers until the request's timeout or enough quotes."""
        subject = subjects.rfq(request.capability)
        header = make_header(
            self._keys,
            audience=RFQ_AUDIENCE,
            subject=subject,
            lifetime_s=request.timeout_s,
            clock=self._clock,
        )
        rfq = Rfq(
            header=header,
            rfq_id=new_nonce(),
            capability=request.capability,
            task_summary=request.task_summary,
            budget_millicredits=request.budget_millicredits,
            delivery_within_s=request.delivery_within_s,
            quote_deadline_ms=header.expires_at_ms,
        )
        inbox = self._connection.new_inbox()
        subscription = await self._connection.subscribe_inbox(inbox)
        try:
            await self._connection.publish(
                subject, json_encoder.encode(seal(rfq, self._keys)), reply=inbox
            )
            quotes, declines = await self._collect(
                subscription, rfq, request.timeout_s, request.quotes_max
            )
        finally:
            await subscription.unsubscribe()
        ranked = ranking(list(quotes.values()), rfq=rfq, reputation=reputation)
        return QuoteCollection(rfq, tuple(ranked), tuple(declines.values()))

    async def _collect(
        self, subscription: Subscription, rfq: Rfq, timeout_s: float, quotes_max: int
    ) -> tuple[dict[str, ReceivedQuote], dict[str, ReceivedDecline]]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        quotes: dict[str, ReceivedQuote] = {}
        declines: dict[str, ReceivedDecline] = {}
        # Each answer is read once and the loop ends at the deadline, so it is
        # bounded by the inbox's traffic within ``timeout_s``.
        while len(quotes) < quotes_max and (remaining_s := deadline - loop.time()) > 0:
            try:
                message = await subscription.next_msg(timeout=remaining_s)
            except TimeoutError:
                break
            answer = self._check_rfq_answer(message.data, rfq)
            # One answer per provider: a second one from the same signer
            # replaces nothing, so a noisy provider cannot crowd others out.
            if answer is None or answer.provider_id in quotes or answer.provider_id in declines:
                continue
            if isinstance(answer, ReceivedQuote):
                quotes[answer.provider_id] = answer
            elif len(declines) < limits.QUOTES_PER_RFQ_MAX:
                declines[answer.provider_id] = answer
        return quotes, declines

    def _check_rfq_answer(self, data: bytes, rfq: Rfq) -> ReceivedQuote | ReceivedDecline | None:
        try:
            opened = open_envelope(data)
            if isinstance(opened.document, Decline):
                decline = verify_evidence(
                    opened,
                    expected_type=Decline,
                    audience=self.agent_id,
                    expected_subject=rfq.header.subject,
                    clock=self._clock,
                    lifetime_max_s=limits.REQUEST_LIFETIME_MAX_S,
                ).document
                assert isinstance(decline, Decline)
                if decline.rfq_id != rfq.rfq_id:
                    log.info("ignored a decline of another RFQ")
                    return None
                return ReceivedDecline(decline, opened.envelope)
            verified = verify_evidence(
                opened,
                expected_type=Quote,
                audience=self.agent_id,
                expected_subject=rfq.header.subject,
                clock=self._clock,
                lifetime_max_s=limits.QUOTE_VALIDITY_MAX_S,
            )
        except SignatureRejected as exc:
            log.info("ignored an answer to an RFQ: %s", exc)
            return None
        quote = verified.document
        assert isinstance(quote, Quote)
        if quote.rfq_id != rfq.rfq_id or quote.price_millicredits > rfq.budget_millicredits:
            log.info("ignored a quote for another RFQ or over the budget")
            return None
        if quote.round != 0 or quote.capability != rfq.capability:
            log.info("ignored a quote that does not answer the RFQ itself")
            return None
        return ReceivedQuote(quote, verified.envelope)

    # --- counter-offers ---------------------------------------------------------------

    async def counter(
        self,
        quote: ReceivedQuote,
        price_millicredits: int,
        /,
        *,
        validity_s: float = limits.COUNTER_VALIDITY_DEFAULT_S,
        timeout_s: float = limits.COUNTER_REPLY_TIMEOUT_DEFAULT_S,
    ) -> ReceivedQuote:
        """Counter one quote; return the provider's quote of the next round.

        Raises :class:`OfferDeclined` with the provider's code (for example
        ``quote_expired`` for a counter-offer to an expired quote),
        :class:`NegotiationError` when nobody answers properly, and
        :class:`RequestTimeout` after ``timeout_s``.
        """
        assert 0 < timeout_s <= validity_s <= limits.REQUEST_LIFETIME_MAX_S
        provider_id = quote.provider_id
        if quote.round >= limits.NEGOTIATION_ROUNDS_MAX:
            raise NegotiationError(
                DeclineCode.ROUNDS_EXHAUSTED,
                f"no counter-offer after round {limits.NEGOTIATION_ROUNDS_MAX}",
                provider_id=provider_id,
            )
        subject = subjects.negotiation(provider_id)
        counter = Counter(
            header=make_header(
                self._keys,
                audience=provider_id,
                subject=subject,
                lifetime_s=validity_s,
                clock=self._clock,
            ),
            rfq_id=quote.quote.rfq_id,
            capability=quote.quote.capability,
            round=quote.round + 1,
            quote_sha256=quote.quote_sha256,
            price_millicredits=price_millicredits,
        )
        envelope = seal(counter, self._keys)
        try:
            answer = await self._connection.request(
                subject, json_encoder.encode(envelope), timeout_s=timeout_s
            )
        except ExchangeError as exc:
            # NATS "no responders": the provider does not take counter-offers.
            raise NegotiationError(exc.code, exc.message, provider_id=provider_id) from exc
        new_quote, new_envelope = self._check_counter_answer(answer, counter, envelope)
        history = (*quote.history, quote.envelope, envelope)
        return ReceivedQuote(new_quote, new_envelope, history)

    def _check_counter_answer(
        self, data: bytes, counter: Counter, counter_envelope: Envelope
    ) -> tuple[Quote, Envelope]:
        provider_id = counter.header.audience
        try:
            opened = open_envelope(data)
            if isinstance(opened.document, Decline):
                decline = verify_evidence(
                    opened,
                    expected_type=Decline,
                    audience=self.agent_id,
                    issuer=provider_id,
                    expected_subject=counter.header.subject,
                    clock=self._clock,
                    lifetime_max_s=limits.REQUEST_LIFETIME_MAX_S,
                ).document
                assert isinstance(decline, Decline)
                raise OfferDeclined(ReceivedDecline(decline, opened.envelope))
            verified = verify_evidence(
                opened,
                expected_type=Quote,
                audience=self.agent_id,
                issuer=provider_id,
                expected_subject=subjects.rfq(counter.capability),
                clock=self._clock,
                lifetime_max_s=limits.QUOTE_VALIDITY_MAX_S,
            )
        except SignatureRejected as exc:
            message = f"the answer: {exc.message}"
            raise NegotiationError(exc.code, message, provider_id=provider_id) from exc
        quote = verified.document
        assert isinstance(quote, Quote)
        counter_sha256 = sha256_hex(b64decode(counter_envelope.doc))
        if (
            quote.rfq_id != counter.rfq_id
            or quote.capability != counter.capability
            or quote.round != counter.round
            or quote.counter_sha256 != counter_sha256
        ):
            raise NegotiationError(
                ErrorCode.INVALID_NEGOTIATION,
                "the answer is not a quote for this counter-offer",
                provider_id=provider_id,
            )
        return quote, verified.envelope

    async def walk_away(self, quote: ReceivedQuote, /, *, reason: str = "") -> None:
        """Tell the provider the buyer leaves this negotiation (no answer expected)."""
        subject = subjects.negotiation(quote.provider_id)
        reject = Reject(
            header=make_header(
                self._keys,
                audience=quote.provider_id,
                subject=subject,
                lifetime_s=limits.COUNTER_VALIDITY_DEFAULT_S,
                clock=self._clock,
            ),
            rfq_id=quote.quote.rfq_id,
            quote_sha256=quote.quote_sha256,
            reason=reason[: limits.TEXT_LENGTH_MAX],
        )
        await self._connection.publish(subject, json_encoder.encode(seal(reject, self._keys)))

    # --- a whole negotiation ----------------------------------------------------------

    async def negotiate(
        self,
        request: QuoteRequest,
        /,
        *,
        strategy: BuyerStrategy,
        ranking: Ranking = rank_quotes,
        reputation: Mapping[str, float] | None = None,
        counter_timeout_s: float = limits.COUNTER_REPLY_TIMEOUT_DEFAULT_S,
    ) -> ReceivedQuote:
        """Call for quotes, then bargain with each provider, best ranked first.

        Returns the first quote the strategy accepts; raises :class:`NoDeal`
        if every negotiation ends without one. The RFQ announces the
        request's budget; no quote is accepted above it or above the
        strategy's own budget.
        """
        collection = await self.call_for_quotes(request, ranking=ranking, reputation=reputation)
        budget_millicredits = min(request.budget_millicredits, strategy.budget_millicredits)
        declines = list(collection.declines)
        walked_away_from: list[str] = []
        for candidate in collection.quotes:
            try:
                agreed = await self._bargain(
                    candidate, strategy, budget_millicredits, counter_timeout_s
                )
            except OfferDeclined as exc:
                log.info("%s declined a counter-offer: %s", exc.provider_id, exc)
                declines.append(exc.decline)
                continue
            except (NegotiationError, RequestTimeout) as exc:
                log.info("negotiation with %s failed: %s", candidate.provider_id, exc)
                continue
            if agreed is not None:
                return agreed
            walked_away_from.append(candidate.provider_id)
        raise NoDeal(
            f"no agreement on {request.capability} with {len(collection.quotes)} quoting providers",
            declines=tuple(declines),
            walked_away_from=tuple(walked_away_from),
            quotes_received=len(collection.quotes),
        )

    async def _bargain(
        self,
        quote: ReceivedQuote,
        strategy: BuyerStrategy,
        budget_millicredits: int,
        counter_timeout_s: float,
    ) -> ReceivedQuote | None:
        """One provider: the agreed quote, or None when the buyer walked away."""
        current = quote
        # Each pass either ends or sends one counter-offer, which raises the
        # round; rounds are bounded, so this loop is too.
        for _ in range(limits.NEGOTIATION_ROUNDS_MAX + 1):
            move = strategy.decide(
                BuyerSituation(
                    provider_id=current.provider_id,
                    price_millicredits=current.price_millicredits,
                    delivery_deadline_ms=current.quote.delivery_deadline_ms,
                    round=current.round,
                )
            )
            if isinstance(move, Accept):
                if current.price_millicredits > budget_millicredits:
                    raise NegotiationError(
                        ErrorCode.INVALID_REQUEST,
                        "the strategy accepted a price over its budget",
                        provider_id=current.provider_id,
                    )
                return current
            if isinstance(move, WalkAway):
                await self.walk_away(current, reason=move.reason)
                return None
            assert isinstance(move, CounterOffer)
            current = await self.counter(
                current, move.price_millicredits, timeout_s=counter_timeout_s
            )
        raise AssertionError("a negotiation went past the round limit")


# --- the provider's side ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _OpenNegotiation:
    """The provider's memory of one negotiation: its latest offer, and earlier ones."""

    rfq: Rfq
    latest: Quote
    latest_sha256: str
    earlier_sha256: tuple[str, ...] = ()
    closed: bool = False


class OfferBook:
    """The provider's latest offer per (buyer, RFQ), bounded.

    When full it forgets negotiations whose latest offer has expired, oldest
    first; if none has, the new negotiation is not remembered (its quote is
    still sent, but a counter-offer to it gets ``unknown_offer``).
    """

    def __init__(self, *, entries_max: int = limits.NEGOTIATIONS_OPEN_MAX) -> None:
        assert entries_max > 0
        self._entries_max = entries_max
        self._entries: OrderedDict[tuple[str, str], _OpenNegotiation] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, buyer_id: str, rfq_id: str, /) -> _OpenNegotiation | None:
        return self._entries.get((buyer_id, rfq_id))

    def put(self, negotiation: _OpenNegotiation, /, *, now_ms: int) -> bool:
        key = (negotiation.rfq.header.issuer, negotiation.rfq.rfq_id)
        if key not in self._entries and len(self._entries) >= self._entries_max:
            self._purge(now_ms)
            if len(self._entries) >= self._entries_max:
                return False
        self._entries[key] = negotiation
        # Updated entries move to the back, so the front holds the offers
        # that were made longest ago: the first to expire.
        self._entries.move_to_end(key)
        return True

    def _purge(self, now_ms: int) -> None:
        while self._entries:
            key, negotiation = next(iter(self._entries.items()))
            if negotiation.latest.header.expires_at_ms > now_ms:
                return
            del self._entries[key]


class OfferDesk:
    """The provider's half: remembers its offers and answers counter-offers."""

    def __init__(
        self,
        connection: NatsConnection,
        keys: AgentKeys,
        /,
        *,
        clock: Clock,
        replay_guard: ReplayGuard,
        entries_max: int = limits.NEGOTIATIONS_OPEN_MAX,
    ) -> None:
        self._connection = connection
        self._keys = keys
        self._clock = clock
        self._replay_guard = replay_guard
        self._book = OfferBook(entries_max=entries_max)
        # capability -> (strategy, validity of the quotes it answers with)
        self._strategies: dict[str, tuple[ProviderStrategy, float]] = {}
        self.agent_id = keys.agent_id
        self.subject = subjects.negotiation(keys.agent_id)

    @property
    def listening(self) -> bool:
        return bool(self._strategies)

    def add_strategy(
        self, capability: str, strategy: ProviderStrategy, /, *, quote_validity_s: float
    ) -> None:
        assert 0 < quote_validity_s <= limits.QUOTE_VALIDITY_MAX_S
        self._strategies[capability] = (strategy, quote_validity_s)

    def negotiates(self, capability: str, /) -> bool:
        return capability in self._strategies

    def opening_price(self, rfq: Rfq, price_millicredits: int, /) -> int:
        """The round-0 price: the pricing's, unless the capability's strategy opens otherwise."""
        if rfq.capability not in self._strategies:
            return price_millicredits
        strategy, _ = self._strategies[rfq.capability]
        opened = strategy.opening_price(price_millicredits, rfq.budget_millicredits)
        return price_millicredits if opened is None else opened

    def remember(self, rfq: Rfq, quote_envelope: Envelope, quote: Quote, /) -> None:
        """Keep a round-0 quote so that counter-offers to it can be answered."""
        negotiation = _OpenNegotiation(rfq, quote, sha256_hex(b64decode(quote_envelope.doc)))
        if not self._book.put(negotiation, now_ms=self._clock.now_ms()):
            log.warning("too many open negotiations; this quote cannot be countered")

    async def on_message(self, message: IncomingMessage, /) -> None:
        """A counter-offer (answered on its reply subject) or a walk-away (not answered)."""
        try:
            opened = open_envelope(message.data)
        except SignatureRejected as exc:
            # Without a decoded document there is nobody to address a decline to.
            log.info("ignored a message on %s: %s", message.subject, exc)
            return
        document = opened.document
        if not isinstance(document, Counter | Reject):
            log.info("ignored a %s on the negotiation subject", type(document).__name__)
            return
        try:
            verified = verify_request(
                opened,
                subject=message.subject,
                subject_agent_id=None,
                clock=self._clock,
                replay_guard=self._replay_guard,
            )
            if document.header.audience != self.agent_id:
                raise SignatureRejected(ErrorCode.WRONG_AUDIENCE, "addressed to someone else")
        except SignatureRejected as exc:
            answer = self._decline(document, exc.code, f"the counter-offer: {exc.message}")
        else:
            if isinstance(document, Reject):
                self._close(document)
                return
            answer = self._answer(document, sha256_hex(verified.document_bytes))
        if message.reply and isinstance(document, Counter):
            await self._connection.publish(message.reply, json_encoder.encode(answer))

    def _close(self, reject: Reject) -> None:
        negotiation = self._book.get(reject.header.issuer, reject.rfq_id)
        if negotiation is not None and negotiation.latest_sha256 == reject.quote_sha256:
            log.info("%s walked away: %s", reject.header.issuer, reject.reason)
            self._book.put(replace(negotiation, closed=True), now_ms=self._clock.now_ms())

    def _answer(self, counter: Counter, counter_sha256: str) -> Envelope:
        """Decide synchronously, so two racing counter-offers are answered in turn."""
        now_ms = self._clock.now_ms()
        negotiation = self._book.get(counter.header.issuer, counter.rfq_id)
        refusal = _refusal(negotiation, counter, now_ms=now_ms)
        if refusal is not None:
            return self._decline(counter, *refusal)
        assert negotiation is not None
        if counter.capability not in self._strategies:
            return self._decline(counter, DeclineCode.NOT_NEGOTIABLE, "prices are fixed")
        strategy, quote_validity_s = self._strategies[counter.capability]
        move = strategy.answer(
            CounterSituation(
                buyer_id=counter.header.issuer,
                capability=counter.capability,
                round=counter.round,
                offered_millicredits=negotiation.latest.price_millicredits,
                countered_millicredits=counter.price_millicredits,
                budget_millicredits=negotiation.rfq.budget_millicredits,
            )
        )
        if isinstance(move, WalkAway):
            self._book.put(replace(negotiation, closed=True), now_ms=now_ms)
            return self._decline(counter, move.code, move.reason)
        assert 1 <= move.price_millicredits <= limits.PRICE_MILLICREDITS_MAX
        envelope, quote = self._next_quote(
            negotiation, counter, counter_sha256, move, quote_validity_s
        )
        advanced = _OpenNegotiation(
            negotiation.rfq,
            quote,
            sha256_hex(b64decode(envelope.doc)),
            (*negotiation.earlier_sha256, negotiation.latest_sha256),
        )
        self._book.put(advanced, now_ms=now_ms)
        return envelope

    def _next_quote(
        self,
        negotiation: _OpenNegotiation,
        counter: Counter,
        counter_sha256: str,
        move: Propose,
        quote_validity_s: float,
    ) -> tuple[Envelope, Quote]:
        header = make_header(
            self._keys,
            audience=counter.header.issuer,
            subject=subjects.rfq(counter.capability),
            lifetime_s=quote_validity_s,
            clock=self._clock,
        )
        quote = Quote(
            header=header,
            rfq_id=counter.rfq_id,
            capability=counter.capability,
            price_millicredits=move.price_millicredits,
            delivery_deadline_ms=header.issued_at_ms + negotiation.rfq.delivery_within_s * 1000,
            terms=negotiation.latest.terms,
            round=counter.round,
            counter_sha256=counter_sha256,
        )
        return seal(quote, self._keys), quote

    def _decline(self, document: Counter | Reject, code: str, reason: str) -> Envelope:
        header = make_header(
            self._keys,
            audience=document.header.issuer,
            subject=self.subject,
            lifetime_s=limits.DECLINE_LIFETIME_S,
            clock=self._clock,
        )
        decline = Decline(
            header=header,
            rfq_id=document.rfq_id,
            reason=reason[: limits.TEXT_LENGTH_MAX],
            code=code,
        )
        return seal(decline, self._keys)


def _refusal(
    negotiation: _OpenNegotiation | None, counter: Counter, /, *, now_ms: int
) -> tuple[DeclineCode, str] | None:
    """Why a counter-offer cannot be answered at all, or None if it can."""
    if negotiation is None:
        return DeclineCode.UNKNOWN_OFFER, "no offer of mine for this RFQ is open"
    if negotiation.closed:
        return DeclineCode.NEGOTIATION_CLOSED, "this negotiation has ended"
    if counter.quote_sha256 in negotiation.earlier_sha256:
        return DeclineCode.OFFER_SUPERSEDED, "that offer was replaced by a newer one"
    if counter.quote_sha256 != negotiation.latest_sha256:
        return DeclineCode.UNKNOWN_OFFER, "no such offer of mine"
    if negotiation.latest.header.expires_at_ms <= now_ms:
        return DeclineCode.QUOTE_EXPIRED, "the offer countered has expired"
    if counter.capability != negotiation.latest.capability:
        return DeclineCode.INVALID_NEGOTIATION, "the counter-offer names another capability"
    if counter.round != negotiation.latest.round + 1:
        return DeclineCode.INVALID_NEGOTIATION, "the counter-offer's round is not the next one"
    return None
