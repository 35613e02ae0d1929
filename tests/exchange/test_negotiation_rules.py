"""The exchange's negotiation rules accept a sound chain and refuse every broken one.

Pure tests of ``exchange.domain.negotiation_rules.check_negotiation`` (no NATS, no
database): a buyer and a provider with real keys sign a chain of quotes and
counter-offers, and each test breaks one link (order, round, hash, signer,
audience, RFQ, signature) or presents a quote the buyer had countered. Old
rounds that have expired still count, because history is checked as it
stood when signed. The negotiation id depends only on (RFQ, buyer, provider).
"""

from __future__ import annotations

import msgspec
import pytest

from agent_client import AgentKeys, subjects
from agent_client.protocol import Counter, Envelope, Quote
from agent_client.signing import b64decode, b64encode, make_header, seal, sha256_hex
from exchange.domain.negotiation_rules import check_negotiation, negotiation_id_for
from exchange.errors import ExchangeError

NOW_MS = 1_800_000_000_000
BUYER = AgentKeys.generate()
PROVIDER = AgentKeys.generate()


class FixedClock:
    def __init__(self, now_ms: int) -> None:
        self._now_ms = now_ms

    def now_ms(self) -> int:
        return self._now_ms


def sha(envelope: Envelope) -> str:
    return sha256_hex(b64decode(envelope.doc))


def quote(round_, counter_envelope=None, *, price=2_000, rfq_id="rfq-1", at_ms=NOW_MS, **overrides):
    keys = overrides.get("keys", PROVIDER)
    document = Quote(
        header=make_header(
            keys,
            audience=overrides.get("audience", BUYER.agent_id),
            subject=subjects.rfq("text.upper"),
            lifetime_s=60,
            clock=FixedClock(at_ms),
        ),
        rfq_id=rfq_id,
        capability="text.upper",
        price_millicredits=price,
        delivery_deadline_ms=at_ms + 60_000,
        round=round_,
        counter_sha256=None if counter_envelope is None else sha(counter_envelope),
    )
    return seal(document, keys)


def counter(round_, quote_envelope, *, rfq_id="rfq-1", at_ms=NOW_MS, **overrides):
    keys = overrides.get("keys", BUYER)
    document = Counter(
        header=make_header(
            keys,
            audience=overrides.get("audience", PROVIDER.agent_id),
            subject=subjects.negotiation(PROVIDER.agent_id),
            lifetime_s=10,
            clock=FixedClock(at_ms),
        ),
        rfq_id=rfq_id,
        capability="text.upper",
        round=round_,
        quote_sha256=sha(quote_envelope),
        price_millicredits=1_000,
    )
    return seal(document, keys)


def chain(rounds):
    """A sound chain: quote 0, counter 1, quote 1, ..., quote ``rounds``; one second apart."""
    envelopes = [quote(0)]
    for round_ in range(1, rounds + 1):
        at_ms = NOW_MS + 2_000 * round_
        envelopes.append(counter(round_, envelopes[-1], at_ms=at_ms - 1_000))
        envelopes.append(quote(round_, envelopes[-1], price=2_000 - 100 * round_, at_ms=at_ms))
    return envelopes


def check(accepted: Envelope, history):
    document = msgspec.json.decode(b64decode(accepted.doc), type=Quote)
    return check_negotiation(
        document, b64decode(accepted.doc), tuple(history), buyer_id=BUYER.agent_id
    )


def refused(accepted, history) -> str:
    with pytest.raises(ExchangeError) as caught:
        check(accepted, history)
    return caught.value.code.value


def test_a_round_zero_quote_needs_no_history_and_names_its_negotiation():
    accepted = check(quote(0), ())
    assert accepted.round == 0
    assert accepted.negotiation_id == negotiation_id_for("rfq-1", BUYER.agent_id, PROVIDER.agent_id)
    assert accepted.negotiation_id != negotiation_id_for("rfq-2", BUYER.agent_id, PROVIDER.agent_id)


def test_a_sound_chain_of_three_rounds_is_accepted_though_its_early_rounds_expired():
    envelopes = chain(3)
    # Checked long after every history document expired: they count as signed.
    accepted = check(envelopes[-1], envelopes[:-1])
    assert (accepted.round, accepted.provider_id) == (3, PROVIDER.agent_id)
    assert accepted.negotiation_id == check(quote(0), ()).negotiation_id


def test_a_quote_the_buyer_countered_is_superseded():
    envelopes = chain(2)
    assert refused(envelopes[0], envelopes[:2]) == "offer_superseded"
    assert refused(envelopes[2], envelopes[:4]) == "offer_superseded"
    assert refused(envelopes[0], envelopes[:4]) == "offer_superseded"


def test_a_later_quote_without_its_history_is_refused():
    envelopes = chain(1)
    assert refused(envelopes[-1], ()) == "invalid_negotiation"
    assert refused(envelopes[-1], envelopes[:1]) == "invalid_negotiation"
    other_opening = quote(0, price=7)
    assert refused(quote(0), [other_opening, counter(1, other_opening)]) == "invalid_negotiation"


@pytest.mark.parametrize(
    "break_chain",
    [
        pytest.param(lambda e: [e[1], e[0]], id="counter-offer-where-a-quote-belongs"),
        pytest.param(lambda e: [e[0], counter(2, e[0])], id="wrong-counter-round"),
        pytest.param(lambda e: [quote(0, price=1), e[1]], id="counter-names-another-quote"),
        pytest.param(lambda e: [quote(1, e[1]), e[1]], id="first-quote-not-round-zero"),
        pytest.param(
            lambda e: [e[0], counter(1, e[0], keys=AgentKeys.generate())], id="counter-not-by-buyer"
        ),
        pytest.param(
            lambda e: [e[0], counter(1, e[0], audience=AgentKeys.generate().agent_id)],
            id="counter-to-someone-else",
        ),
        pytest.param(
            lambda e: [quote(0, keys=AgentKeys.generate()), e[1]], id="quote-by-another-provider"
        ),
        pytest.param(lambda e: [quote(0, rfq_id="rfq-2"), e[1]], id="another-rfq"),
        pytest.param(
            lambda e: [Envelope(doc=e[0].doc, sig=b64encode(bytes(64))), e[1]],
            id="forged-signature",
        ),
        pytest.param(lambda e: [Envelope(doc="", sig=""), e[1]], id="not-a-document"),
    ],
)
def test_a_broken_link_is_an_invalid_negotiation(break_chain):
    envelopes = chain(1)
    assert refused(envelopes[-1], break_chain(envelopes[:2])) == "invalid_negotiation"


def test_the_accepted_quote_must_answer_the_last_counter_offer():
    envelopes = chain(2)
    stray = quote(2, counter(2, envelopes[2], at_ms=NOW_MS + 9_000), price=5)
    assert refused(stray, envelopes[:4]) == "invalid_negotiation"


def test_a_round_zero_quote_that_claims_to_answer_a_counter_offer_is_refused():
    claimed = quote(0, counter(1, quote(0, price=9)))
    assert refused(claimed, ()) == "invalid_negotiation"
