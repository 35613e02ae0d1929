"""Acceptance rules for negotiated quotes (pure: no I/O).

Negotiation runs peer to peer, so the exchange learns of it only from what
the buyer's acceptance carries: the accepted quote and, for a quote of round
n > 0, the 2n signed documents before it (quote, counter-offer, quote, ...).
:func:`check_negotiation` checks that chain and names the negotiation the
quote belongs to; the use case then lets each negotiation open at most one
contract. docs/PROTOCOL.md ("Negotiation") gives the reasoning:

1. **One contract per negotiation.** A negotiation is (RFQ id, buyer,
   provider). Once any of its offers opened a contract, every other offer
   of it is refused with ``offer_superseded``.
2. **Only the latest offer of the chain shown.** The accepted quote must
   answer the last counter-offer in the history, and a quote the buyer's
   own signed counter-offer in that history already countered is refused
   with ``offer_superseded``.
3. **A chain that holds together.** Every document is signed by the right
   party, addressed to the other, about the same RFQ and capability; rounds
   count up by one; each counter-offer names the hash of the quote before
   it and each later quote the hash of the counter-offer it answers. Any
   break is ``invalid_negotiation``.

History documents are checked as they stood when they were signed: an
earlier round has usually expired by the time the buyer accepts a later one,
and that is fine.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NoReturn

from agent_client import limits as protocol_limits
from agent_client import subjects
from agent_client.errors import SignatureRejected
from agent_client.protocol import Counter, Document, Envelope, Quote
from agent_client.signing import open_envelope_struct, sha256_hex, verify_evidence
from exchange.errors import ErrorCode, ExchangeError

__all__ = ["AcceptedNegotiation", "check_negotiation", "negotiation_id_for"]


@dataclass(frozen=True, slots=True)
class AcceptedNegotiation:
    """The negotiation an accepted quote ends: at most one contract per id."""

    negotiation_id: str
    rfq_id: str
    buyer_id: str
    provider_id: str
    round: int


def negotiation_id_for(rfq_id: str, buyer_id: str, provider_id: str, /) -> str:
    # Agent ids and rfq ids never contain a newline, so the joined text is unambiguous.
    return hashlib.sha256(f"{rfq_id}\n{buyer_id}\n{provider_id}".encode()).hexdigest()


def check_negotiation(
    quote: Quote,
    quote_bytes: bytes,
    history: Sequence[Envelope],
    /,
    *,
    buyer_id: str,
) -> AcceptedNegotiation:
    """Check a verified accepted quote's negotiation history; name its negotiation."""
    documents = [
        _verified_as_signed(envelope, index, quote=quote, buyer_id=buyer_id)
        for index, envelope in enumerate(history)
    ]
    accepted_sha256 = sha256_hex(quote_bytes)
    for document, document_bytes in documents:
        countered = isinstance(document, Counter) and document.quote_sha256 == accepted_sha256
        if countered or sha256_hex(document_bytes) == accepted_sha256:
            raise ExchangeError(
                ErrorCode.OFFER_SUPERSEDED,
                "the buyer countered this quote: only the provider's answer can be accepted",
            )
    if len(history) != 2 * quote.round:
        raise ExchangeError(
            ErrorCode.INVALID_NEGOTIATION,
            f"a quote of round {quote.round} comes with the {2 * quote.round} documents before it",
        )
    chain: list[tuple[Document, bytes]] = [*documents, (quote, quote_bytes)]
    for index, (document, _) in enumerate(chain):
        _check_link(document, index, previous_bytes=chain[index - 1][1] if index else None)
    return AcceptedNegotiation(
        negotiation_id=negotiation_id_for(quote.rfq_id, buyer_id, quote.header.issuer),
        rfq_id=quote.rfq_id,
        buyer_id=buyer_id,
        provider_id=quote.header.issuer,
        round=quote.round,
    )


def _check_link(document: Document, index: int, /, *, previous_bytes: bytes | None) -> None:
    """Quotes sit at even places, counter-offers at odd ones; each names the one before."""
    previous_sha256 = None if previous_bytes is None else sha256_hex(previous_bytes)
    if isinstance(document, Quote):
        if document.round != index // 2:
            _broken(index, f"a quote of round {index // 2} was expected")
        if document.counter_sha256 != previous_sha256:
            _broken(index, "the quote does not name the counter-offer it answers")
        return
    assert isinstance(document, Counter)
    if document.round != index // 2 + 1:
        _broken(index, f"a counter-offer of round {index // 2 + 1} was expected")
    if document.quote_sha256 != previous_sha256:
        _broken(index, "the counter-offer does not name the quote before it")


def _verified_as_signed(
    envelope: Envelope, index: int, /, *, quote: Quote, buyer_id: str
) -> tuple[Document, bytes]:
    """Open one history document and check it as it stood when it was signed."""
    provider_id = quote.header.issuer
    is_quote = index % 2 == 0
    try:
        opened = open_envelope_struct(envelope)
        verified = verify_evidence(
            opened,
            expected_type=Quote if is_quote else Counter,
            audience=buyer_id if is_quote else provider_id,
            issuer=provider_id if is_quote else buyer_id,
            expected_subject=(
                subjects.rfq(quote.capability) if is_quote else subjects.negotiation(provider_id)
            ),
            clock=_AtSigning(opened.document.header.issued_at_ms),
            lifetime_max_s=(
                protocol_limits.QUOTE_VALIDITY_MAX_S
                if is_quote
                else protocol_limits.REQUEST_LIFETIME_MAX_S
            ),
        )
    except SignatureRejected as exc:
        _broken(index, exc.message)
    document = verified.document
    assert isinstance(document, Quote | Counter)
    if document.rfq_id != quote.rfq_id or document.capability != quote.capability:
        _broken(index, "it belongs to another RFQ or capability")
    return document, verified.document_bytes


class _AtSigning:
    """A clock stopped at a document's issued-at: checks it as it stood when signed."""

    def __init__(self, now_ms: int) -> None:
        self._now_ms = now_ms

    def now_ms(self) -> int:
        return self._now_ms


def _broken(index: int, reason: str) -> NoReturn:
    raise ExchangeError(ErrorCode.INVALID_NEGOTIATION, f"history[{index}]: {reason}")
