"""What a buyer asks and holds during a negotiation: the request, verified quotes, declines.

These are plain values with no I/O. A :class:`QuoteRequest` is what a call
for quotes asks providers (and how long it listens). A :class:`ReceivedQuote` keeps the
provider's signed envelope unchanged, and, for a quote of round n > 0, the
2n signed documents of the negotiation before it, which the exchange checks
when the quote is accepted (docs/PROTOCOL.md, "Negotiation").
"""

from __future__ import annotations

from dataclasses import KW_ONLY, dataclass

from agent_client import limits
from agent_client.protocol import Decline, Envelope, Quote, Rfq
from agent_client.signing import b64decode, sha256_hex

__all__ = ["QuoteCollection", "QuoteRequest", "ReceivedDecline", "ReceivedQuote"]


@dataclass(frozen=True, slots=True)
class QuoteRequest:
    """One call for quotes: what is asked of providers, and how long to listen.

    * ``capability`` and ``task_summary``: the service wanted and a short
      description of the task (the task itself goes to :meth:`Agent.hire`).
    * ``budget_millicredits``: the most the buyer pays; providers see it, and
      quotes above it are never collected.
    * ``delivery_within_s``: the delivery deadline asked for, from the quote.
    * ``timeout_s``: how long quotes are collected (the RFQ's quote deadline).
    * ``quotes_max``: collection stops early after this many quotes.

    The same request can be sent again: each call signs a new RFQ.
    """

    capability: str
    task_summary: str
    _: KW_ONLY
    budget_millicredits: int
    delivery_within_s: int = 60
    timeout_s: float = limits.QUOTE_COLLECTION_TIMEOUT_DEFAULT_S
    quotes_max: int = 10

    def __post_init__(self) -> None:
        if not 1 <= self.budget_millicredits <= limits.PRICE_MILLICREDITS_MAX:
            raise ValueError("budget_millicredits must be a valid price")
        if not 1 <= self.delivery_within_s <= limits.DELIVERY_DEADLINE_MAX_S:
            raise ValueError(f"delivery_within_s must be within {limits.DELIVERY_DEADLINE_MAX_S} s")
        if not 0 < self.timeout_s <= limits.REQUEST_LIFETIME_MAX_S:
            raise ValueError(f"timeout_s must be within {limits.REQUEST_LIFETIME_MAX_S} s")
        if not 1 <= self.quotes_max <= limits.QUOTES_PER_RFQ_MAX:
            raise ValueError(f"quotes_max must be between 1 and {limits.QUOTES_PER_RFQ_MAX}")
        if len(self.task_summary) > limits.TEXT_LENGTH_MAX:
            raise ValueError(f"task_summary must be at most {limits.TEXT_LENGTH_MAX} characters")


@dataclass(frozen=True, slots=True)
class ReceivedQuote:
    """A provider's quote that passed every check, with its signed envelope.

    ``history`` is the negotiation before this quote, oldest first: the
    round-0 quote, the buyer's first counter-offer, the round-1 quote, ...,
    the counter-offer this quote answers. It is empty for a round-0 quote.
    """

    quote: Quote
    envelope: Envelope
    history: tuple[Envelope, ...] = ()

    def __post_init__(self) -> None:
        assert len(self.history) == 2 * self.quote.round, "a round-n quote has 2n documents"

    @property
    def provider_id(self) -> str:
        return self.quote.header.issuer

    @property
    def price_millicredits(self) -> int:
        return self.quote.price_millicredits

    @property
    def round(self) -> int:
        return self.quote.round

    @property
    def quote_sha256(self) -> str:
        """The hash a counter-offer names this quote by."""
        return sha256_hex(b64decode(self.envelope.doc))


@dataclass(frozen=True, slots=True)
class ReceivedDecline:
    """A provider's signed no, to an RFQ or to a counter-offer."""

    decline: Decline
    envelope: Envelope

    @property
    def provider_id(self) -> str:
        return self.decline.header.issuer

    @property
    def code(self) -> str:
        return self.decline.code

    @property
    def reason(self) -> str:
        return self.decline.reason


@dataclass(frozen=True, slots=True)
class QuoteCollection:
    """The answers to one RFQ: quotes best first (by the ranking), and declines."""

    rfq: Rfq
    quotes: tuple[ReceivedQuote, ...]
    declines: tuple[ReceivedDecline, ...]
