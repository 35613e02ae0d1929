"""A ``QuoteRequest`` is one checked value, and the RFQ a call for quotes signs says what it says.

Pure tests: real keys and signatures, a fixed clock, and a fake connection
that keeps what the buyer's desk publishes and answers nothing. They prove
that out-of-range parameters are refused when the request is made (before
anything is signed), that the request is frozen and its options are
keyword-only, and that the signed RFQ carries the request's capability,
summary, budget and delivery time, with a quote deadline ``timeout_s``
after it was issued. Over a real exchange, ``negotiate`` announces the
request's budget but never accepts a quote above its strategy's budget.
"""

from __future__ import annotations

import dataclasses

import pytest

from agent_client import AgentKeys, NoDeal, QuoteRequest, limits, subjects
from agent_client.negotiation import RFQ_AUDIENCE, BuyerDesk
from agent_client.protocol import Rfq
from agent_client.signing import open_envelope
from agent_client.strategies import Accept, BuyerSituation

NOW_MS = 1_800_000_000_000
BUYER = AgentKeys.generate()


class FixedClock:
    def now_ms(self) -> int:
        return NOW_MS


class SilentSubscription:
    """Nobody answers: the desk's collection ends at once."""

    # The name of nats-py's parameter, which the desk passes by keyword.
    async def next_msg(self, timeout: float) -> object:  # noqa: ASYNC109
        raise TimeoutError

    async def unsubscribe(self) -> None:
        return None


class RecordingConnection:
    """Stands in for NatsConnection: keeps what would have been published."""

    def __init__(self) -> None:
        self.published: list[tuple[str, bytes, str]] = []

    def new_inbox(self) -> str:
        return "_INBOX.test"

    async def subscribe_inbox(self, subject: str, /) -> SilentSubscription:
        return SilentSubscription()

    async def publish(self, subject: str, payload: bytes, /, *, reply: str = "") -> None:
        self.published.append((subject, payload, reply))


def test_a_request_has_the_documented_defaults():
    request = QuoteRequest("text.upper", "shout", budget_millicredits=5_000)
    assert request.delivery_within_s == 60
    assert request.timeout_s == limits.QUOTE_COLLECTION_TIMEOUT_DEFAULT_S
    assert request.quotes_max == 10


def test_a_request_is_frozen_and_its_options_are_keyword_only():
    request = QuoteRequest("text.upper", "shout", budget_millicredits=5_000)
    with pytest.raises(dataclasses.FrozenInstanceError):
        request.budget_millicredits = 1  # type: ignore[misc]
    with pytest.raises(TypeError):
        QuoteRequest("text.upper", "shout", 5_000)  # type: ignore[misc]
    assert request == QuoteRequest("text.upper", "shout", budget_millicredits=5_000)


@pytest.mark.parametrize(
    "options",
    [
        {"budget_millicredits": 0},
        {"budget_millicredits": limits.PRICE_MILLICREDITS_MAX + 1},
        {"budget_millicredits": 1, "delivery_within_s": 0},
        {"budget_millicredits": 1, "delivery_within_s": limits.DELIVERY_DEADLINE_MAX_S + 1},
        {"budget_millicredits": 1, "timeout_s": 0},
        {"budget_millicredits": 1, "timeout_s": limits.REQUEST_LIFETIME_MAX_S + 1},
        {"budget_millicredits": 1, "quotes_max": 0},
        {"budget_millicredits": 1, "quotes_max": limits.QUOTES_PER_RFQ_MAX + 1},
    ],
)
def test_a_request_out_of_range_is_refused_when_made(options):
    with pytest.raises(ValueError):
        QuoteRequest("text.upper", "shout", **options)


def test_a_task_summary_over_the_text_limit_is_refused():
    with pytest.raises(ValueError):
        QuoteRequest("text.upper", "x" * (limits.TEXT_LENGTH_MAX + 1), budget_millicredits=1)


async def test_the_signed_rfq_carries_the_request():
    connection = RecordingConnection()
    desk = BuyerDesk(connection, BUYER, clock=FixedClock())  # type: ignore[arg-type]
    request = QuoteRequest(
        "text.upper", "shout this", budget_millicredits=4_200, delivery_within_s=90, timeout_s=2
    )

    collection = await desk.call_for_quotes(request)

    [(subject, payload, reply)] = connection.published
    assert (subject, reply) == (subjects.rfq("text.upper"), "_INBOX.test")
    rfq = open_envelope(payload).document
    assert isinstance(rfq, Rfq)
    assert rfq == collection.rfq
    assert (rfq.capability, rfq.task_summary) == ("text.upper", "shout this")
    assert (rfq.budget_millicredits, rfq.delivery_within_s) == (4_200, 90)
    assert (rfq.header.issuer, rfq.header.audience) == (BUYER.agent_id, RFQ_AUDIENCE)
    assert rfq.quote_deadline_ms == rfq.header.expires_at_ms == NOW_MS + 2_000
    assert (collection.quotes, collection.declines) == ((), ())


class AcceptAnything:
    """A strategy that takes any offer; the Agent still holds it to its budget."""

    def __init__(self, budget_millicredits: int) -> None:
        self.budget_millicredits = budget_millicredits

    def decide(self, situation: BuyerSituation, /) -> Accept:
        return Accept()


async def test_negotiate_never_accepts_above_the_strategys_budget(exchange):
    provider = await exchange.agent()
    await provider.advertise("text.upper", description="u", price_millicredits=1_800)

    async def upper(task):
        return task

    await provider.serve("text.upper", upper, pricing=1_800)
    buyer = await exchange.agent()
    request = QuoteRequest("text.upper", "x", budget_millicredits=2_000, quotes_max=1, timeout_s=2)

    with pytest.raises(NoDeal) as caught:
        await buyer.negotiate(request, strategy=AcceptAnything(1_000))
    assert caught.value.quotes_received == 1
    agreed = await buyer.negotiate(request, strategy=AcceptAnything(2_000))
    assert (agreed.provider_id, agreed.price_millicredits) == (provider.agent_id, 1_800)
