"""The signed RFQ and quote the benchmarks send: sealed, checked as a receiver does.

``deals.py`` (its signed round-trip limit) and ``protocol_floor.py`` (the
RFQ of each deal) both put one signed RFQ out and one signed quote back,
with the checks the protocol asks of each side. The subject is one an agent
may request and its responder may serve under NATS auth: an RFQ subject or
the responder's own negotiation subject; neither names the requester, so
the responder checks the signer as a provider does, without the subject.
"""

from __future__ import annotations

from agent_client import AgentKeys, limits
from agent_client.negotiation import RFQ_AUDIENCE
from agent_client.protocol import Quote, Rfq, json_encoder
from agent_client.signing import (
    Clock,
    ReplayGuard,
    make_header,
    new_nonce,
    open_envelope,
    seal,
    verify_evidence,
    verify_request,
)

__all__ = ["CAPABILITY", "PRICE_MILLICREDITS", "check_quote", "quote_for", "sealed_rfq"]

CAPABILITY = "bench.echo"
PRICE_MILLICREDITS = 1_000
RFQ_LIFETIME_S = 10
QUOTE_LIFETIME_S = 60
DELIVERY_WITHIN_S = 60


def sealed_rfq(keys: AgentKeys, subject: str, clock: Clock) -> tuple[bytes, str]:
    """A signed RFQ for ``subject`` and its id."""
    header = make_header(
        keys, audience=RFQ_AUDIENCE, subject=subject, lifetime_s=RFQ_LIFETIME_S, clock=clock
    )
    rfq = Rfq(
        header=header,
        rfq_id=new_nonce(),
        capability=CAPABILITY,
        task_summary="echo",
        budget_millicredits=PRICE_MILLICREDITS,
        delivery_within_s=DELIVERY_WITHIN_S,
    )
    return json_encoder.encode(seal(rfq, keys)), rfq.rfq_id


def quote_for(
    data: bytes, subject: str, keys: AgentKeys, clock: Clock, replay_guard: ReplayGuard
) -> bytes:
    """The receiver's checks on an RFQ that came on ``subject``, then a signed quote for it."""
    rfq = verify_request(
        open_envelope(data),
        subject=subject,
        subject_agent_id=None,
        clock=clock,
        replay_guard=replay_guard,
    ).document
    assert isinstance(rfq, Rfq) and rfq.header.audience == RFQ_AUDIENCE
    header = make_header(
        keys, audience=rfq.header.issuer, subject=subject, lifetime_s=QUOTE_LIFETIME_S, clock=clock
    )
    quote = Quote(
        header=header,
        rfq_id=rfq.rfq_id,
        capability=rfq.capability,
        price_millicredits=rfq.budget_millicredits,
        delivery_deadline_ms=header.issued_at_ms + rfq.delivery_within_s * 1000,
    )
    return json_encoder.encode(seal(quote, keys))


def check_quote(
    reply: bytes, *, buyer_id: str, subject: str, provider_id: str, rfq_id: str, clock: Clock
) -> None:
    """The buyer's checks on the quote answering its RFQ ``rfq_id``."""
    quote = verify_evidence(
        open_envelope(reply),
        expected_type=Quote,
        audience=buyer_id,
        expected_subject=subject,
        issuer=provider_id,
        clock=clock,
        lifetime_max_s=limits.QUOTE_VALIDITY_MAX_S,
    ).document
    assert isinstance(quote, Quote) and quote.rfq_id == rfq_id
