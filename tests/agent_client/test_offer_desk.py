"""The provider's offer desk answers each counter-offer by the rules, with a typed decline.

Pure tests: real keys and signatures, a clock the test moves, and a fake
connection that records what the desk publishes instead of NATS. They prove
that a counter-offer to the latest live offer gets a signed quote of the
next round naming the counter-offer's hash; that a counter-offer to an
expired quote, to a superseded or unknown offer, with the wrong round,
expired itself, replayed or addressed to someone else is declined with its
code; that a walk-away closes the negotiation; and that the desk's memory is
bounded.
"""

from __future__ import annotations

import pytest

from agent_client import AgentKeys, limits, subjects
from agent_client.negotiation import OfferBook, OfferDesk, _OpenNegotiation
from agent_client.protocol import Counter, Decline, Quote, Reject, Rfq, json_encoder
from agent_client.signing import (
    ReplayGuard,
    b64decode,
    make_header,
    open_envelope,
    seal,
    sha256_hex,
)
from agent_client.strategies import ConcedingProvider
from agent_client.transport import IncomingMessage

NOW_MS = 1_800_000_000_000
PROVIDER = AgentKeys.generate()
BUYER = AgentKeys.generate()


class MovableClock:
    def __init__(self) -> None:
        self.now = NOW_MS

    def now_ms(self) -> int:
        return self.now


class RecordingConnection:
    """Stands in for NatsConnection: keeps what would have been published."""

    def __init__(self) -> None:
        self.published: list[tuple[str, bytes]] = []

    async def publish(self, subject: str, payload: bytes, /, *, reply: str = "") -> None:
        self.published.append((subject, payload))


@pytest.fixture
def clock():
    return MovableClock()


@pytest.fixture
def desk(clock):
    desk = OfferDesk(RecordingConnection(), PROVIDER, clock=clock, replay_guard=ReplayGuard())
    desk.add_strategy(
        "text.upper",
        ConcedingProvider(floor_millicredits=1_500, step_millicredits=200, rounds_max=3),
        quote_validity_s=60,
    )
    return desk


def opening(desk, clock, *, rfq_id="rfq-1", price=2_000):
    """An RFQ from the buyer and the desk's round-0 quote to it, remembered."""
    rfq = Rfq(
        header=make_header(
            BUYER,
            audience="providers",
            subject=subjects.rfq("text.upper"),
            lifetime_s=5,
            clock=clock,
        ),
        rfq_id=rfq_id,
        capability="text.upper",
        task_summary="x",
        budget_millicredits=5_000,
        delivery_within_s=60,
    )
    quote = Quote(
        header=make_header(
            PROVIDER,
            audience=BUYER.agent_id,
            subject=subjects.rfq("text.upper"),
            lifetime_s=60,
            clock=clock,
        ),
        rfq_id=rfq_id,
        capability="text.upper",
        price_millicredits=price,
        delivery_deadline_ms=clock.now_ms() + 60_000,
    )
    envelope = seal(quote, PROVIDER)
    desk.remember(rfq, envelope, quote)
    return sha256_hex(b64decode(envelope.doc))


def counter(clock, quote_sha256, *, round_=1, price=1_000, rfq_id="rfq-1", keys=BUYER, **header):
    document = Counter(
        header=make_header(
            keys,
            audience=header.get("audience", PROVIDER.agent_id),
            subject=subjects.negotiation(PROVIDER.agent_id),
            lifetime_s=header.get("lifetime_s", 10),
            clock=header.get("signing_clock", clock),
        ),
        rfq_id=rfq_id,
        capability="text.upper",
        round=round_,
        quote_sha256=quote_sha256,
        price_millicredits=price,
    )
    return seal(document, keys)


async def send(desk, envelope):
    """Delivers one message to the desk; returns its answer, decoded, if any."""
    connection = desk._connection
    before = len(connection.published)
    message = IncomingMessage(desk.subject, json_encoder.encode(envelope), "_INBOX.buyer.1")
    await desk.on_message(message)
    if len(connection.published) == before:
        return None
    subject, payload = connection.published[-1]
    assert subject == "_INBOX.buyer.1"
    return open_envelope(payload)


async def test_a_counter_offer_gets_a_quote_of_the_next_round_naming_it(desk, clock):
    quote_sha256 = opening(desk, clock)
    envelope = counter(clock, quote_sha256)
    answer = await send(desk, envelope)
    quote = answer.document
    assert isinstance(quote, Quote)
    assert (quote.round, quote.price_millicredits) == (1, 1_800)
    assert quote.counter_sha256 == sha256_hex(b64decode(envelope.doc))
    assert quote.header.audience == BUYER.agent_id
    assert quote.header.subject == subjects.rfq("text.upper")


async def expect_decline(desk, envelope, code):
    answer = await send(desk, envelope)
    assert answer is not None
    decline = answer.document
    assert isinstance(decline, Decline)
    assert decline.code == code
    assert decline.header.audience == BUYER.agent_id
    assert decline.header.subject == subjects.negotiation(PROVIDER.agent_id)


async def test_a_counter_offer_to_an_expired_quote_is_declined(desk, clock):
    quote_sha256 = opening(desk, clock)
    clock.now += 60_000
    await expect_decline(desk, counter(clock, quote_sha256), "quote_expired")


async def test_a_counter_offer_to_a_superseded_offer_is_declined(desk, clock):
    quote_sha256 = opening(desk, clock)
    await send(desk, counter(clock, quote_sha256))
    await expect_decline(desk, counter(clock, quote_sha256, price=1_100), "offer_superseded")


async def test_a_counter_offer_to_an_unknown_offer_is_declined(desk, clock):
    opening(desk, clock)
    await expect_decline(desk, counter(clock, "0" * 64), "unknown_offer")
    await expect_decline(desk, counter(clock, "0" * 64, rfq_id="never-quoted"), "unknown_offer")


async def test_a_counter_offer_with_the_wrong_round_is_declined(desk, clock):
    quote_sha256 = opening(desk, clock)
    await expect_decline(desk, counter(clock, quote_sha256, round_=2), "invalid_negotiation")


async def test_counter_offers_that_fail_the_request_checks_are_declined_with_that_check(
    desk, clock
):
    quote_sha256 = opening(desk, clock)

    class PastClock:
        def now_ms(self):
            return NOW_MS - 20_000

    await expect_decline(desk, counter(clock, quote_sha256, signing_clock=PastClock()), "expired")
    stranger = AgentKeys.generate().agent_id
    await expect_decline(desk, counter(clock, quote_sha256, audience=stranger), "wrong_audience")
    envelope = counter(clock, quote_sha256)
    await send(desk, envelope)
    await expect_decline(desk, envelope, "replayed")


async def test_the_provider_walks_away_after_its_rounds_and_stays_away(desk, clock):
    latest = opening(desk, clock)
    for round_ in (1, 2, 3):
        answer = await send(desk, counter(clock, latest, round_=round_))
        assert isinstance(answer.document, Quote)
        latest = sha256_hex(answer.document_bytes)
    await expect_decline(desk, counter(clock, latest, round_=4), "rounds_exhausted")
    await expect_decline(desk, counter(clock, latest, round_=4), "negotiation_closed")


async def test_a_walk_away_by_the_buyer_closes_the_negotiation_without_an_answer(desk, clock):
    quote_sha256 = opening(desk, clock)
    reject = Reject(
        header=make_header(
            BUYER,
            audience=PROVIDER.agent_id,
            subject=subjects.negotiation(PROVIDER.agent_id),
            lifetime_s=10,
            clock=clock,
        ),
        rfq_id="rfq-1",
        quote_sha256=quote_sha256,
        reason="too dear",
    )
    assert await send(desk, seal(reject, BUYER)) is None
    await expect_decline(desk, counter(clock, quote_sha256), "negotiation_closed")


async def test_a_capability_without_a_strategy_declines_counter_offers_as_fixed_price(clock):
    desk = OfferDesk(RecordingConnection(), PROVIDER, clock=clock, replay_guard=ReplayGuard())
    desk.add_strategy(
        "text.reverse",
        ConcedingProvider(floor_millicredits=1, step_millicredits=1),
        quote_validity_s=60,
    )
    quote_sha256 = opening(desk, clock)
    await expect_decline(desk, counter(clock, quote_sha256), "not_negotiable")


def test_the_offer_book_is_bounded_and_forgets_expired_offers_first(clock):
    book = OfferBook(entries_max=2)

    def negotiation(rfq_id, expires_at_ms):
        header = make_header(BUYER, audience="p", subject="s", lifetime_s=1, clock=clock)
        rfq = Rfq(
            header=header,
            rfq_id=rfq_id,
            capability="text.upper",
            task_summary="x",
            budget_millicredits=1,
            delivery_within_s=1,
        )
        quote_header = make_header(PROVIDER, audience="b", subject="s", lifetime_s=1, clock=clock)
        quote = Quote(
            header=msgspec_replace(quote_header, expires_at_ms=expires_at_ms),
            rfq_id=rfq_id,
            capability="text.upper",
            price_millicredits=1,
            delivery_deadline_ms=1,
        )
        return _OpenNegotiation(rfq, quote, rfq_id)

    assert book.put(negotiation("a", NOW_MS + 10), now_ms=NOW_MS)
    assert book.put(negotiation("b", NOW_MS + 1_000), now_ms=NOW_MS)
    # Full, and nothing has expired: the newcomer is not remembered.
    assert not book.put(negotiation("c", NOW_MS + 1_000), now_ms=NOW_MS)
    # Once "a" has expired it makes room.
    assert book.put(negotiation("c", NOW_MS + 1_000), now_ms=NOW_MS + 20)
    assert book.get(BUYER.agent_id, "a") is None
    assert book.get(BUYER.agent_id, "c") is not None
    assert len(book) == 2 <= limits.NEGOTIATIONS_OPEN_MAX


def msgspec_replace(struct, **changes):
    import msgspec

    return msgspec.structs.replace(struct, **changes)
