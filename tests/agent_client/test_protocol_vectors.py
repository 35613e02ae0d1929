"""The test vectors of docs/PROTOCOL.md are true: each one is checked against the library.

A client author in another language checks an implementation against the
vectors of the protocol reference (Appendix A, and the RFQ envelope of
section 1.4), so a wrong vector costs them a day. These tests read the
document itself: every block labelled ``Vector `name``` and the key table
of Appendix A, and check each with the Python implementation. The nkey
challenge is signed again and compared; documents are verified with a fixed
clock inside their lifetimes and signed again from the test seeds (ed25519
is deterministic); the signed replies go through ``open_reply``, once for
the request they answer and once for another request, which must fail with
``reply_mismatch``; hashes, fees and the sealed result are recomputed.
Every envelope printed in full anywhere in the document must verify and
name a subject of the current version. Pure tests: no NATS, no database.
"""

from __future__ import annotations

import base64
import hashlib
import re
from functools import cache
from pathlib import Path

import msgspec
import nacl.signing
import nkeys
import pytest

from agent_client import limits, subjects
from agent_client.errors import SignatureRejected
from agent_client.keys import AgentKeys, is_agent_id
from agent_client.protocol import (
    BalanceReply,
    ContractRecord,
    ErrorCode,
    InfoReply,
    OpenContract,
    Quote,
    Rfq,
    json_encoder,
)
from agent_client.replies import ANY_AUDIENCE, open_reply
from agent_client.sealing import open_sealed
from agent_client.signing import (
    ReplayGuard,
    VerifiedDocument,
    b64decode,
    b64encode,
    open_envelope,
    sha256_hex,
    verify_evidence,
    verify_request,
)
from broker.nats_jwt import decode_public_nkey, verify_nonce_signature
from escrow.machine import provider_share_for_bps, settlement_for

PROTOCOL_PATH = Path(__file__).resolve().parents[2] / "docs" / "PROTOCOL.md"
# A vector is the first fenced block after the line that names it.
VECTOR_LABEL = re.compile(r"Vector `([a-z0-9_.]+)`")
FENCED_BLOCK = re.compile(r"^```[a-z]*\n(.*?)\n```$", re.MULTILINE | re.DOTALL)
KEY_ROW = re.compile(
    r"^\| ([a-z0-9]+) \| `([0-9a-f]{64})` \| `([0-9a-f]{64})` \| `(SU[A-Z2-7]{56})` \| "
    r"`(U[A-Z2-7]{55})` \|$",
    re.MULTILINE,
)
FULL_ENVELOPE = re.compile(r'\{"doc":"[A-Za-z0-9_-]+","sig":"[A-Za-z0-9_-]+"\}')
EXPECTED_VECTORS = frozenset(
    {
        "rfq.envelope",
        "connection",
        "quote.envelope",
        "quote.doc",
        "quote.hashes",
        "acceptance.envelope",
        "record.envelope",
        "record.hashes",
        "info.expected",
        "info.reply",
        "reply.request",
        "reply.envelope",
        "reply.expected",
        "reply.body",
        "reply.other_request",
        "reply.mismatch",
        "result",
        "fees",
        "sealed",
    }
)
KEY_NAMES = frozenset({"buyer", "provider", "provider2", "exchange", "operator", "portal"})
# Vector `rfq.envelope` verifies at this moment (section 1.4 and Appendix A say so).
RFQ_CLOCK_MS = 1_795_255_200_500


class FixedClock:
    def __init__(self, now_ms: int) -> None:
        self._now_ms = now_ms

    def now_ms(self) -> int:
        return self._now_ms


@cache
def protocol_text() -> str:
    return PROTOCOL_PATH.read_text(encoding="utf-8")


@cache
def vectors() -> dict[str, str]:
    """Every labelled block of the document, by name; each name once."""
    text = protocol_text()
    found: dict[str, str] = {}
    labels = list(VECTOR_LABEL.finditer(text))
    for index, label in enumerate(labels):
        block = FENCED_BLOCK.search(text, label.end())
        assert block is not None, f"vector {label.group(1)} has no block after it"
        next_label = labels[index + 1].start() if index + 1 < len(labels) else len(text)
        assert block.start() < next_label, f"vector {label.group(1)} has no block of its own"
        assert label.group(1) not in found, f"vector {label.group(1)} is named twice"
        found[label.group(1)] = block.group(1)
    return found


def vector_bytes(name: str) -> bytes:
    return vectors()[name].encode()


def vector_fields(name: str) -> dict[str, str]:
    """A block of ``name: value`` lines."""
    fields: dict[str, str] = {}
    for line in vectors()[name].splitlines():
        key, separator, value = line.partition(": ")
        assert separator, f"vector {name}: {line!r} is not a 'name: value' line"
        fields[key] = value
    return fields


@cache
def documented_keys() -> dict[str, AgentKeys]:
    """The keys of Appendix A's table, by name."""
    appendix = protocol_text().split("## Appendix A", 1)[1]
    rows = KEY_ROW.findall(appendix)
    assert {row[0] for row in rows} == KEY_NAMES
    return {name: AgentKeys.from_seed(seed_text) for name, _, _, seed_text, _ in rows}


def opened(envelope_bytes: bytes) -> VerifiedDocument:
    return open_envelope(envelope_bytes, size_max=limits.REPLY_BYTES_MAX)


def assert_signature_reproduces(verified: VerifiedDocument, keys: AgentKeys) -> None:
    """ed25519 is deterministic: the seed signs the doc bytes to the same sig."""
    assert b64encode(keys.sign(verified.document_bytes)) == verified.envelope.sig


def test_the_document_names_each_expected_vector_once():
    assert set(vectors()) == EXPECTED_VECTORS


def test_the_test_keys_derive_from_their_names():
    appendix = protocol_text().split("## Appendix A", 1)[1]
    for name, seed_hex, public_hex, seed_text, agent_id in KEY_ROW.findall(appendix):
        seed = hashlib.sha256(f"agentx-docs-{name}".encode()).digest()
        assert seed.hex() == seed_hex
        keys = AgentKeys(nacl.signing.SigningKey(seed))
        assert bytes(nacl.signing.SigningKey(seed).verify_key).hex() == public_hex
        assert keys.seed_text().decode() == seed_text
        assert keys.agent_id == agent_id
        assert is_agent_id(agent_id)
    assert 'crc16("123456789") = 0x31C3' in protocol_text()
    assert nkeys.crc16(bytearray(b"123456789")) == 0x31C3


def test_the_connection_vector_is_the_keys_signature_of_the_nonce():
    fields = vector_fields("connection")
    keys = AgentKeys.from_seed(fields["seed_text"])
    assert keys.agent_id == fields["nkey"] == documented_keys()["buyer"].agent_id
    signature = keys.sign(fields["server_nonce"].encode())
    assert base64.b64encode(signature).decode() == fields["sig_base64"]
    assert b64encode(signature) == fields["sig_base64url"]
    public_key = decode_public_nkey(fields["nkey"], prefix_byte=nkeys.PREFIX_BYTE_USER)
    assert public_key is not None
    for encoded in (fields["sig_base64"], fields["sig_base64url"]):
        assert verify_nonce_signature(public_key, fields["server_nonce"], encoded)
        assert not verify_nonce_signature(public_key, "another nonce", encoded)
    assert f'"nkey":"{fields["nkey"]}","sig":"{fields["sig_base64"]}"' in protocol_text()


def test_the_quote_verifies_and_hashes_to_its_contract_id():
    verified = opened(vector_bytes("quote.envelope"))
    assert verified.document_bytes == vector_bytes("quote.doc")
    keys = documented_keys()
    hashes = vector_fields("quote.hashes")
    quote = verify_evidence(
        verified,
        expected_type=Quote,
        audience=keys["buyer"].agent_id,
        issuer=keys["provider"].agent_id,
        expected_subject=subjects.rfq("text.summarize"),
        clock=FixedClock(int(hashes["clock_ms"])),
        lifetime_max_s=limits.QUOTE_VALIDITY_MAX_S,
    )
    assert_signature_reproduces(quote, keys["provider"])
    assert sha256_hex(verified.document_bytes) == hashes["quote_sha256"]
    assert hashes["contract_id"] == "c_" + hashes["quote_sha256"][:32]


def test_the_acceptance_carries_the_quote_and_the_record_names_both():
    keys = documented_keys()
    hashes = vector_fields("record.hashes")
    clock = FixedClock(int(hashes["clock_ms"]))
    acceptance = opened(vector_bytes("acceptance.envelope"))
    document = acceptance.document
    assert isinstance(document, OpenContract)
    verify_request(
        acceptance,
        subject=subjects.exchange_request(keys["buyer"].agent_id, "contract.open"),
        subject_agent_id=keys["buyer"].agent_id,
        clock=clock,
        replay_guard=ReplayGuard(),
    )
    assert_signature_reproduces(acceptance, keys["buyer"])
    assert json_encoder.encode(document.quote) == vector_bytes("quote.envelope")
    quote_hashes = vector_fields("quote.hashes")
    contract_id = quote_hashes["contract_id"]
    record = verify_evidence(
        opened(vector_bytes("record.envelope")),
        expected_type=ContractRecord,
        audience="*",
        issuer=keys["exchange"].agent_id,
        expected_subject=f"{subjects.ROOT}.contract.{contract_id}",
        clock=clock,
        lifetime_max_s=limits.CONTRACT_RECORD_LIFETIME_S,
    )
    assert_signature_reproduces(record, keys["exchange"])
    contract = record.document
    assert isinstance(contract, ContractRecord)
    assert contract.contract_id == contract_id
    assert contract.quote_sha256 == quote_hashes["quote_sha256"]
    assert contract.acceptance_sha256 == sha256_hex(acceptance.document_bytes)
    assert contract.acceptance_sha256 == hashes["acceptance_sha256"]
    assert contract.buyer_id == keys["buyer"].agent_id
    assert contract.provider_id == keys["provider"].agent_id


def test_the_info_reply_answers_the_nonce_and_names_its_signer():
    expected = vector_fields("info.expected")
    keys = documented_keys()
    request = expected["info_request"].encode()
    assert expected["request_subject"] == subjects.EXCHANGE_INFO
    assert expected["audience"] == ANY_AUDIENCE
    assert sha256_hex(request) == expected["request_sha256"]
    clock = FixedClock(int(expected["clock_ms"]))
    # Learning the id (no pin) and checking a pinned one accept the same reply.
    for pinned in (None, keys["exchange"].agent_id):
        signer, body = open_reply(
            vector_bytes("info.reply"),
            signer_id=pinned,
            audience=ANY_AUDIENCE,
            request_subject=subjects.EXCHANGE_INFO,
            request_payload=request,
            clock=clock,
        )
        assert signer == expected["signer"] == keys["exchange"].agent_id
        assert isinstance(body, InfoReply)
        assert body.exchange_id == signer
    assert isinstance(body, InfoReply)
    assert body.protocol_version == int(expected["protocol_version"]) == limits.PROTOCOL_VERSION
    assert body.endpoints == list(subjects.EXCHANGE_ENDPOINTS)
    assert body.portal_id == expected["portal_id"] == keys["portal"].agent_id
    assert_signature_reproduces(opened(vector_bytes("info.reply")), keys["exchange"])
    with pytest.raises(SignatureRejected) as refused:
        open_reply(
            vector_bytes("info.reply"),
            signer_id=keys["operator"].agent_id,
            audience=ANY_AUDIENCE,
            request_subject=subjects.EXCHANGE_INFO,
            request_payload=request,
            clock=clock,
        )
    assert refused.value.code == ErrorCode.SIGNER_MISMATCH


def test_the_reply_verifies_for_the_request_it_answers():
    expected = vector_fields("reply.expected")
    keys = documented_keys()
    request = vector_bytes("reply.request")
    assert sha256_hex(request) == expected["request_sha256"]
    clock = FixedClock(int(expected["clock_ms"]))
    verify_request(
        opened(request),
        subject=expected["request_subject"],
        subject_agent_id=expected["audience"],
        clock=clock,
        replay_guard=ReplayGuard(),
    )
    signer, body = open_reply(
        vector_bytes("reply.envelope"),
        signer_id=keys["exchange"].agent_id,
        audience=expected["audience"],
        request_subject=expected["request_subject"],
        request_payload=request,
        clock=clock,
    )
    assert expected["outcome"] == "verified"
    assert signer == expected["signer"] == keys["exchange"].agent_id
    assert expected["audience"] == keys["buyer"].agent_id
    assert expected["request_subject"] == subjects.exchange_request(
        keys["buyer"].agent_id, "wallet.balance"
    )
    assert isinstance(body, BalanceReply)
    assert json_encoder.encode(body) == vector_bytes("reply.body")
    assert_signature_reproduces(opened(vector_bytes("reply.envelope")), keys["exchange"])


def test_the_same_reply_for_another_request_is_a_reply_mismatch():
    mismatch = vector_fields("reply.mismatch")
    expected = vector_fields("reply.expected")
    other_request = vector_bytes("reply.other_request")
    assert other_request != vector_bytes("reply.request")
    assert sha256_hex(other_request) == mismatch["request_sha256"]
    with pytest.raises(SignatureRejected) as refused:
        open_reply(
            vector_bytes("reply.envelope"),
            signer_id=documented_keys()["exchange"].agent_id,
            audience=expected["audience"],
            request_subject=expected["request_subject"],
            request_payload=other_request,
            clock=FixedClock(int(mismatch["clock_ms"])),
        )
    assert refused.value.code == ErrorCode.REPLY_MISMATCH == mismatch["outcome"]


def test_the_rfq_of_the_walk_through_verifies_as_a_request():
    rfq = verify_request(
        opened(vector_bytes("rfq.envelope")),
        subject=subjects.rfq("text.summarize"),
        subject_agent_id=None,
        clock=FixedClock(RFQ_CLOCK_MS),
        replay_guard=ReplayGuard(),
    )
    assert isinstance(rfq.document, Rfq)
    assert rfq.document.header.audience == "providers"
    assert rfq.document.header.issuer == documented_keys()["buyer"].agent_id
    assert_signature_reproduces(rfq, documented_keys()["buyer"])


def test_the_result_hash_and_the_fees_are_what_the_library_computes():
    result = vector_fields("result")
    assert sha256_hex(result["bytes"].encode()) == result["sha256"]
    for line in vectors()["fees"].splitlines():
        price, rate_bps, share_bps, fee, net, refunded = map(int, line.split())
        share = provider_share_for_bps(price, provider_share_bps=share_bps)
        settlement = settlement_for(price, provider_share_millicredits=share, fee_rate_bps=rate_bps)
        assert (
            settlement.fee_millicredits,
            settlement.net_millicredits,
            settlement.refunded_millicredits,
        ) == (fee, net, refunded)


def test_the_sealed_result_opens_with_the_buyers_key():
    sealed = vector_fields("sealed")
    buyer = documented_keys()["buyer"]
    assert sealed["recipient"] == buyer.agent_id
    assert bytes(buyer.box_private_key()).hex() == sealed["x25519_secret"]
    assert bytes(buyer.box_private_key().public_key).hex() == sealed["x25519_public"]
    result_bytes = sealed["result_bytes"].encode()
    assert sha256_hex(result_bytes) == sealed["result_sha256"]
    ciphertext = b64decode(msgspec.json.decode(result_bytes, type=str))
    plaintext = sealed["plaintext"].encode()
    assert len(ciphertext) == len(plaintext) + 48
    assert open_sealed(buyer, ciphertext) == plaintext


def test_every_envelope_printed_in_full_verifies_under_the_current_root():
    envelopes = FULL_ENVELOPE.findall(protocol_text())
    assert len(envelopes) >= len([name for name in EXPECTED_VECTORS if "envelope" in name])
    for text in envelopes:
        verified = opened(text.encode())
        header = verified.document.header
        assert header.subject.startswith(subjects.ROOT + "."), header.subject
        assert b"agentx.v1" not in verified.document_bytes
        signer = next(keys for keys in documented_keys().values() if keys.agent_id == header.issuer)
        assert_signature_reproduces(verified, signer)
