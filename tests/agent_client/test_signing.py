"""Signed documents: every receiver check rejects with its own stable code.

Pure tests (no NATS): a fixed clock drives time, documents are sealed with
real ed25519 keys, and each test breaks exactly one property. It also proves
that verification uses the exact signed bytes and that a forged message
cannot burn a genuine sender's nonce.
"""

import msgspec
import pytest

from agent_client import AgentKeys, SignatureRejected, limits
from agent_client.protocol import Envelope, GetBalance, Quote, Rfq, json_encoder
from agent_client.signing import (
    ReplayGuard,
    b64decode,
    b64encode,
    make_header,
    open_envelope,
    seal,
    verify_evidence,
    verify_request,
)

SUBJECT = "agentx.v2.x.SOMEONE.wallet.balance"
NOW_MS = 1_800_000_000_000


class FixedClock:
    def __init__(self, now_ms: int = NOW_MS) -> None:
        self.now = now_ms

    def now_ms(self) -> int:
        return self.now


def balance_request(keys, clock, *, subject=SUBJECT, lifetime_s=10.0, audience="exchange"):
    header = make_header(
        keys, audience=audience, subject=subject, lifetime_s=lifetime_s, clock=clock
    )
    return json_encoder.encode(seal(GetBalance(header=header), keys))


def verify(data, *, clock, guard=None, subject=SUBJECT, subject_agent_id=None):
    return verify_request(
        open_envelope(data),
        subject=subject,
        subject_agent_id=subject_agent_id,
        clock=clock,
        replay_guard=guard if guard is not None else ReplayGuard(),
    )


def rejected_code(call):
    with pytest.raises(SignatureRejected) as caught:
        call()
    return caught.value.code


def test_a_good_request_verifies_and_keeps_its_exact_bytes():
    keys, clock = AgentKeys.generate(), FixedClock()
    data = balance_request(keys, clock)
    verified = verify(data, clock=clock, subject_agent_id=keys.agent_id)
    assert verified.verified
    assert verified.document.header.issuer == keys.agent_id
    envelope = msgspec.json.decode(data, type=Envelope)
    assert verified.document_bytes == b64decode(envelope.doc)


def test_a_request_signed_for_another_subject_is_refused():
    keys, clock = AgentKeys.generate(), FixedClock()
    data = balance_request(keys, clock, subject="agentx.v2.x.OTHER.wallet.balance")
    assert rejected_code(lambda: verify(data, clock=clock)) == "subject_mismatch"


def test_a_request_from_the_future_beyond_the_skew_window_is_refused():
    keys = AgentKeys.generate()
    data = balance_request(keys, FixedClock(NOW_MS + (limits.CLOCK_SKEW_MAX_S + 1) * 1000))
    assert rejected_code(lambda: verify(data, clock=FixedClock())) == "clock_skew"


def test_a_request_within_the_skew_window_is_accepted():
    keys = AgentKeys.generate()
    data = balance_request(keys, FixedClock(NOW_MS + (limits.CLOCK_SKEW_MAX_S - 1) * 1000))
    assert verify(data, clock=FixedClock()).verified


def test_an_expired_request_is_refused():
    keys, clock = AgentKeys.generate(), FixedClock()
    data = balance_request(keys, clock, lifetime_s=5)
    clock.now += 5_000
    assert rejected_code(lambda: verify(data, clock=clock)) == "expired"


def test_a_request_that_lives_too_long_is_refused():
    keys, clock = AgentKeys.generate(), FixedClock()
    data = balance_request(keys, clock, lifetime_s=limits.REQUEST_LIFETIME_MAX_S + 1)
    assert rejected_code(lambda: verify(data, clock=clock)) == "lifetime_too_long"


def test_a_replayed_request_is_refused():
    keys, clock, guard = AgentKeys.generate(), FixedClock(), ReplayGuard()
    data = balance_request(keys, clock)
    verify(data, clock=clock, guard=guard)
    assert rejected_code(lambda: verify(data, clock=clock, guard=guard)) == "replayed"


def test_a_tampered_document_fails_the_signature_check():
    keys, clock = AgentKeys.generate(), FixedClock()
    envelope = msgspec.json.decode(balance_request(keys, clock), type=Envelope)
    document = b64decode(envelope.doc).replace(b'"exchange"', b'"exchangf"')
    tampered = json_encoder.encode(Envelope(doc=b64encode(document), sig=envelope.sig))
    assert rejected_code(lambda: verify(tampered, clock=clock)) == "bad_signature"


def test_a_document_signed_by_someone_else_than_its_issuer_is_refused():
    issuer, forger, clock = AgentKeys.generate(), AgentKeys.generate(), FixedClock()
    envelope = msgspec.json.decode(balance_request(issuer, clock), type=Envelope)
    forged_sig = b64encode(forger.sign(b64decode(envelope.doc)))
    forged = json_encoder.encode(Envelope(doc=envelope.doc, sig=forged_sig))
    assert rejected_code(lambda: verify(forged, clock=clock)) == "bad_signature"


def test_a_forged_message_does_not_burn_the_genuine_nonce():
    keys, forger, clock, guard = (
        AgentKeys.generate(),
        AgentKeys.generate(),
        FixedClock(),
        ReplayGuard(),
    )
    genuine = balance_request(keys, clock)
    envelope = msgspec.json.decode(genuine, type=Envelope)
    forged = json_encoder.encode(
        Envelope(doc=envelope.doc, sig=b64encode(forger.sign(b64decode(envelope.doc))))
    )
    assert rejected_code(lambda: verify(forged, clock=clock, guard=guard)) == "bad_signature"
    assert verify(genuine, clock=clock, guard=guard).verified


def test_a_signer_other_than_the_agent_in_the_subject_is_refused():
    keys, other, clock = AgentKeys.generate(), AgentKeys.generate(), FixedClock()
    data = balance_request(keys, clock)
    code = rejected_code(lambda: verify(data, clock=clock, subject_agent_id=other.agent_id))
    assert code == "signer_mismatch"


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b"{not json", "malformed"),
        (b'{"doc": 1, "sig": 2}', "malformed"),
        (b'{"doc": "!!!", "sig": ""}', "malformed"),
        (
            json_encoder.encode(Envelope(doc=b64encode(b'{"kind": "teleport"}'), sig="")),
            "unknown_kind",
        ),
        (
            json_encoder.encode(Envelope(doc=b64encode(b'{"kind": "wallet.balance"}'), sig="")),
            "malformed",
        ),
        (b" " * (limits.MESSAGE_BYTES_MAX + 1), "payload_too_large"),
    ],
    ids=["not-json", "wrong-types", "not-base64", "unknown-kind", "missing-header", "oversize"],
)
def test_broken_envelopes_are_refused_with_their_code(data, code):
    assert rejected_code(lambda: open_envelope(data)) == code


def quote_for(provider, buyer_id, clock, *, lifetime_s=60.0):
    header = make_header(
        provider,
        audience=buyer_id,
        subject="agentx.v2.rfq.text.upper",
        lifetime_s=lifetime_s,
        clock=clock,
    )
    quote = Quote(
        header=header,
        rfq_id="rfq-1",
        capability="text.upper",
        price_millicredits=1_000,
        delivery_deadline_ms=NOW_MS + 60_000,
    )
    return json_encoder.encode(seal(quote, provider))


def test_a_quote_is_valid_evidence_only_for_its_audience():
    provider, buyer, stranger = (AgentKeys.generate() for _ in range(3))
    clock = FixedClock()
    data = quote_for(provider, buyer.agent_id, clock)

    def check(audience):
        return verify_evidence(
            open_envelope(data),
            expected_type=Quote,
            audience=audience,
            clock=clock,
            lifetime_max_s=limits.QUOTE_VALIDITY_MAX_S,
        )

    assert check(buyer.agent_id).verified
    assert rejected_code(lambda: check(stranger.agent_id)) == "wrong_audience"


def test_evidence_of_the_wrong_kind_is_refused():
    provider, buyer, clock = AgentKeys.generate(), AgentKeys.generate(), FixedClock()
    data = quote_for(provider, buyer.agent_id, clock)
    code = rejected_code(
        lambda: verify_evidence(
            open_envelope(data), expected_type=Rfq, audience=None, clock=clock, lifetime_max_s=60
        )
    )
    assert code == "wrong_kind"


def test_the_replay_guard_is_bounded_and_forgets_only_expired_nonces():
    guard, clock = ReplayGuard(entries_max=2), FixedClock()
    guard.remember("issuer", "n1", NOW_MS + 1_000, now_ms=clock.now)
    guard.remember("issuer", "n2", NOW_MS + 1_000, now_ms=clock.now)
    with pytest.raises(SignatureRejected) as caught:
        guard.remember("issuer", "n3", NOW_MS + 1_000, now_ms=clock.now)
    assert caught.value.code == "unavailable"
    assert guard.seen("issuer", "n1") and guard.seen("issuer", "n2")
    later_ms = NOW_MS + 1_000 + limits.CLOCK_SKEW_MAX_S * 1000 + 1
    guard.remember("issuer", "n3", later_ms + 1_000, now_ms=later_ms)
    assert guard.seen("issuer", "n3") and not guard.seen("issuer", "n1")
    assert len(guard) == 1
