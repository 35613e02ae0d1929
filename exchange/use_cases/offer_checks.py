"""The checks of a provider's signed offer a buyer accepts: a quote or a metered offer.

Both are evidence (docs/PROTOCOL.md, section 3.5) addressed to the buyer,
signed for their capability's subject, by someone other than the buyer; an
expired one is ``quote_expired``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from agent_client import limits as protocol_limits
from agent_client.errors import SignatureRejected
from agent_client.protocol import Envelope, MeteredOffer, Quote
from agent_client.signing import Clock, open_envelope_struct, verify_evidence
from exchange.errors import ErrorCode, ExchangeError

__all__ = ["verified_offer"]

_Offer = TypeVar("_Offer", Quote, MeteredOffer)


def verified_offer(
    envelope: Envelope,
    expected_type: type[_Offer],
    /,
    *,
    buyer_id: str,
    clock: Clock,
    subject_for: Callable[[str], str],
    name: str,
) -> tuple[_Offer, bytes]:
    """The offer and its signed bytes, or the typed refusal (``name`` says which offer)."""
    try:
        verified = verify_evidence(
            open_envelope_struct(envelope),
            expected_type=expected_type,
            audience=buyer_id,
            clock=clock,
            lifetime_max_s=protocol_limits.QUOTE_VALIDITY_MAX_S,
        )
    except SignatureRejected as exc:
        code = ErrorCode.QUOTE_EXPIRED if exc.code == ErrorCode.EXPIRED else ErrorCode(exc.code)
        raise ExchangeError(code, f"the {name}: {exc.message}") from exc
    offer = verified.document
    assert isinstance(offer, expected_type)
    if offer.header.subject != subject_for(offer.capability):
        raise ExchangeError(ErrorCode.SUBJECT_MISMATCH, f"the {name} names another capability")
    if offer.header.issuer == buyer_id:
        raise ExchangeError(ErrorCode.FORBIDDEN, "an agent cannot hire itself")
    return offer, verified.document_bytes
