"""What a buyer holds during a negotiation: verified quotes, declines, a call's outcome.

These are plain values with no I/O. A :class:`ReceivedQuote` keeps the
provider's signed envelope unchanged, and, for a quote of round n > 0, the
2n signed documents of the negotiation before it, which the exchange checks
when the quote is accepted (docs/PROTOCOL.md, "Negotiation").
"""

from __future__ import annotations

from dataclasses import dataclass

from agent_client.protocol import Decline, Envelope, Quote, Rfq
from agent_client.signing import b64decode, sha256_hex

__all__ = ["QuoteCollection", "ReceivedDecline", "ReceivedQuote"]


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
