"""docs/PROTOCOL.md shows what the code sends and accepts, byte for byte.

Client authors in other languages build from the protocol reference alone,
checking their code against its test vectors (Appendix A) and copying its
examples, so a vector or an example that the code no longer produces costs
them a day. This module proves three things about the document:

1. **Appendix A is what the code builds.** Every vector that a party
   computes (the RFQ, the quote, a ``wallet.balance`` request, the
   ``contract.open`` acceptance, the contract record, the signed ``info``
   and ``balance`` replies, the nkey challenge, the hashes, the fees) is
   rebuilt here from fixed inputs: the test keys (each ed25519 seed is
   SHA-256 of ``agentx-docs-<name>``), fixed times and fixed nonces, with
   the real protocol structs, ``json_encoder`` and ``seal`` (ed25519 is
   deterministic). The rebuilt text must equal the document's block
   exactly. A change of the wire format (a field added, renamed, moved or
   re-typed, another encoding) that forgets the document fails here.
2. **The vectors verify and the stated hashes hold**, with the real
   verification functions (``verify_request``, ``verify_evidence``,
   ``open_reply``, the auth callout's nonce check) at the clocks the
   appendix gives: the acceptance's ``doc`` bytes hash to the record's
   ``acceptance_sha256`` and its payload to another value; the quote
   embedded in it decodes to the quote's own bytes, which give the
   contract id; a reply shown another request fails with
   ``reply_mismatch``; the sealed result opens with the buyer's key.
3. **The examples and the field tables match the structs.** Every
   ```json example of the document whose object has a ``kind`` of a
   document or a reply decodes into its struct and re-encodes with the
   same fields, in the same order, with the same JSON types; an example of
   a document that is also a vector (the same nonce) says what the
   vector's bytes say, long strings cut with ``…`` excepted; and the field
   tables of sections 5.2 and 5.3 name each struct's fields, in its order.

How: the document is read as text. A vector is the first fenced block
after the words ``Vector `name```; the key table of Appendix A is parsed
by its rows. After a deliberate change of the wire format, run
``python -m tests.agent_client.test_protocol_vectors`` to print every
rebuilt vector, and paste them into the appendix. Pure tests: no NATS, no
database.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import textwrap
from collections.abc import Callable, Iterator
from functools import cache
from pathlib import Path
from typing import Any

import msgspec
import nacl.signing
import nkeys
import pytest

from agent_client import limits, subjects
from agent_client.errors import SignatureRejected
from agent_client.keys import AgentKeys, is_agent_id
from agent_client.protocol import (
    BalanceReply,
    ContractEventEntry,
    ContractRecord,
    ContractView,
    Document,
    Envelope,
    ErrorCode,
    GetBalance,
    Header,
    InfoReply,
    Listing,
    ListingRevision,
    OpenContract,
    Quote,
    RatingEntry,
    Reply,
    Reputation,
    Rfq,
    SignedReply,
    TransactionEntry,
    json_encoder,
)
from agent_client.replies import ANY_AUDIENCE, open_reply
from agent_client.sealing import open_sealed
from agent_client.signing import (
    ReplayGuard,
    b64decode,
    b64encode,
    open_envelope,
    seal,
    sha256_hex,
    verify_evidence,
    verify_request,
)
from broker.nats_jwt import decode_public_nkey, verify_nonce_signature
from escrow.machine import provider_share_for_bps, settlement_for

PROTOCOL_PATH = Path(__file__).resolve().parents[2] / "docs" / "PROTOCOL.md"
# A vector is the first fenced block after the line that names it.
VECTOR_LABEL = re.compile(r"Vector\s+`([a-z0-9_.]+)`")
FENCED_BLOCK = re.compile(r"^```[a-z]*\n(.*?)\n```$", re.MULTILINE | re.DOTALL)
# Every ```json block, indented or not (examples inside list items are).
JSON_BLOCK = re.compile(r"^( *)```json\n(.*?)\n\1```$", re.MULTILINE | re.DOTALL)
KEY_ROW = re.compile(
    r"^\| ([a-z0-9]+) \| `([0-9a-f]{64})` \| `([0-9a-f]{64})` \| `(SU[A-Z2-7]{56})` \| "
    r"`(U[A-Z2-7]{55})` \|$",
    re.MULTILINE,
)
FULL_ENVELOPE = re.compile(r'\{"doc":"[A-Za-z0-9_-]+","sig":"[A-Za-z0-9_-]+"\}')
CUT = "…"
KEY_NAMES = ("buyer", "provider", "provider2", "exchange", "operator", "portal")
# Vectors a client can only check, not rebuild: sealing is randomised.
CHECKED_ONLY_VECTORS = frozenset({"sealed"})

# --- The fixed inputs of Appendix A ----------------------------------------------
# Times are Unix ms around section 1.4's clock, 2026-11-21T10:00:00Z.
CAPABILITY = "text.summarize"
RFQ_ID = "tR4mW8qZ1xY6bN3vK0pL2g"
SERVER_NONCE = "pZ3x9QmLr7TkW2v"
INFO_REQUEST = b"Hq7Wd2Xe5Rc8Tv1Yb4Nu6M"
TASK = b'{"text":"Tidal energy is ..."}'
RESULT = b'{"summary":"Tidal power is predictable but costly to build ..."}'
ESCROW_FEE_BPS = 500
PRICE_MILLICREDITS = 2500
# (price, fee rate, provider share) of vector `fees`: released, refunded,
# split by an operator, and the default split.
FEE_CASES = ((2500, 500, 10_000), (2500, 500, 0), (2500, 500, 6_000), (2500, 500, 5_000))
# The moments at which the appendix says each vector verifies.
RFQ_CLOCK_MS = 1_795_255_200_500
QUOTE_CLOCK_MS = 1_795_255_200_500
ACCEPTANCE_CLOCK_MS = 1_795_255_200_500
INFO_CLOCK_MS = 1_795_255_130_010
REQUEST_CLOCK_MS = 1_795_255_211_010
OTHER_REQUEST_CLOCK_MS = 1_795_255_212_010


class FixedClock:
    def __init__(self, now_ms: int) -> None:
        self._now_ms = now_ms

    def now_ms(self) -> int:
        return self._now_ms


@cache
def fixed_keys() -> dict[str, AgentKeys]:
    """The keys of Appendix A, from their fixed 32-byte seeds."""
    return {name: AgentKeys(nacl.signing.SigningKey(key_seed(name))) for name in KEY_NAMES}


def key_seed(name: str) -> bytes:
    return hashlib.sha256(f"agentx-docs-{name}".encode()).digest()


def agent_id(name: str) -> str:
    return fixed_keys()[name].agent_id


def header(
    issuer: str, *, audience: str, subject: str, issued_at_ms: int, lifetime_ms: int, nonce: str
) -> Header:
    return Header(
        issuer=agent_id(issuer),
        audience=audience,
        subject=subject,
        issued_at_ms=issued_at_ms,
        expires_at_ms=issued_at_ms + lifetime_ms,
        nonce=nonce,
    )


def signed(document: Document, signer: str) -> Envelope:
    return seal(document, fixed_keys()[signer])


def payload(envelope: Envelope) -> bytes:
    """The envelope as it goes on the wire: what a reply's request_sha256 hashes."""
    return json_encoder.encode(envelope)


def doc_bytes(envelope: Envelope) -> bytes:
    return b64decode(envelope.doc)


def contract_id_for(quote: Envelope) -> str:
    return "c_" + sha256_hex(doc_bytes(quote))[:32]


# --- Appendix A, rebuilt --------------------------------------------------------


@cache
def rfq_envelope() -> Envelope:
    rfq = Rfq(
        header=header(
            "buyer",
            audience="providers",
            subject=subjects.rfq(CAPABILITY),
            issued_at_ms=1_795_255_200_000,
            lifetime_ms=1_000,
            nonce="b7Pq2Xz9LmN4vC1kJ8sD3A",
        ),
        rfq_id=RFQ_ID,
        capability=CAPABILITY,
        task_summary="Summarise a 2,000-word article about tidal energy",
        budget_millicredits=3000,
        delivery_within_s=120,
        quote_deadline_ms=1_795_255_201_000,
    )
    return signed(rfq, "buyer")


@cache
def quote_envelope() -> Envelope:
    issued_at_ms = 1_795_255_200_012
    quote = Quote(
        header=header(
            "provider",
            audience=agent_id("buyer"),
            subject=subjects.rfq(CAPABILITY),
            issued_at_ms=issued_at_ms,
            lifetime_ms=60_000,
            nonce="Zr5Tn1Wq8Ye3Ua6Io0Pa2S",
        ),
        rfq_id=RFQ_ID,
        capability=CAPABILITY,
        price_millicredits=PRICE_MILLICREDITS,
        # The Python provider's rule: issued_at_ms + delivery_within_s * 1000.
        delivery_deadline_ms=issued_at_ms + 120_000,
    )
    return signed(quote, "provider")


def balance_request(*, issued_at_ms: int, nonce: str) -> Envelope:
    request = GetBalance(
        header=header(
            "buyer",
            audience="exchange",
            subject=subjects.exchange_request(agent_id("buyer"), "wallet.balance"),
            issued_at_ms=issued_at_ms,
            lifetime_ms=10_000,
            nonce=nonce,
        )
    )
    return signed(request, "buyer")


@cache
def request_envelope() -> Envelope:
    return balance_request(issued_at_ms=1_795_255_211_000, nonce="Lk0Jh3Gf6Ds9Ap2Oi5Uy8T")


@cache
def other_request_envelope() -> Envelope:
    return balance_request(issued_at_ms=1_795_255_212_000, nonce="Wq2Er5Ty8Ui1Op4As7Df0G")


@cache
def acceptance_envelope() -> Envelope:
    acceptance = OpenContract(
        header=header(
            "buyer",
            audience="exchange",
            subject=subjects.exchange_request(agent_id("buyer"), "contract.open"),
            issued_at_ms=1_795_255_200_400,
            lifetime_ms=10_000,
            nonce="J2hG5fD8sA1kL4zX7cV0bN",
        ),
        quote=quote_envelope(),
        task=msgspec.Raw(TASK),
    )
    return signed(acceptance, "buyer")


@cache
def record_envelope() -> Envelope:
    quote = msgspec.json.decode(doc_bytes(quote_envelope()), type=Quote)
    contract_id = contract_id_for(quote_envelope())
    full_release = settlement_for(
        quote.price_millicredits,
        provider_share_millicredits=quote.price_millicredits,
        fee_rate_bps=ESCROW_FEE_BPS,
    )
    record = ContractRecord(
        header=header(
            "exchange",
            audience="*",
            subject=f"{subjects.ROOT}.contract.{contract_id}",
            issued_at_ms=1_795_255_200_431,
            lifetime_ms=limits.CONTRACT_RECORD_LIFETIME_S * 1000,
            nonce="Mx3Qw6Er9Ty2Ui5Op8As1D",
        ),
        contract_id=contract_id,
        buyer_id=agent_id("buyer"),
        provider_id=quote.header.issuer,
        capability=quote.capability,
        price_millicredits=quote.price_millicredits,
        fee_millicredits=full_release.fee_millicredits,
        delivery_deadline_ms=quote.delivery_deadline_ms,
        quote_sha256=sha256_hex(doc_bytes(quote_envelope())),
        acceptance_sha256=sha256_hex(doc_bytes(acceptance_envelope())),
    )
    return signed(record, "exchange")


def signed_reply(
    body: Reply,
    *,
    audience: str,
    request_subject: str,
    request_payload: bytes,
    issued_at_ms: int,
    nonce: str,
) -> bytes:
    """What ``sign_reply`` sends, with a fixed time and nonce."""
    document = SignedReply(
        header=header(
            "exchange",
            audience=audience,
            subject=request_subject,
            issued_at_ms=issued_at_ms,
            lifetime_ms=limits.REPLY_LIFETIME_S * 1000,
            nonce=nonce,
        ),
        request_sha256=sha256_hex(request_payload),
        body=body,
    )
    return payload(signed(document, "exchange"))


def info_body() -> InfoReply:
    return InfoReply(
        exchange_id=agent_id("exchange"),
        protocol_version=limits.PROTOCOL_VERSION,
        escrow_fee_bps=ESCROW_FEE_BPS,
        endpoints=list(subjects.EXCHANGE_ENDPOINTS),
        portal_id=agent_id("portal"),
    )


@cache
def info_reply() -> bytes:
    return signed_reply(
        info_body(),
        audience=ANY_AUDIENCE,
        request_subject=subjects.EXCHANGE_INFO,
        request_payload=INFO_REQUEST,
        issued_at_ms=1_795_255_130_005,
        nonce="Gw3Ej6Rk9Tl2Yz5Um8Ip1O",
    )


def balance_body() -> BalanceReply:
    # 100,000 minted, 2,500 paid for the contract of section 1.4.
    return BalanceReply(
        agent_id=agent_id("buyer"),
        available_millicredits=97_500,
        held_millicredits=0,
        credits_posted_millicredits=100_000,
        debits_posted_millicredits=2_500,
    )


@cache
def balance_reply() -> bytes:
    return signed_reply(
        balance_body(),
        audience=agent_id("buyer"),
        request_subject=subjects.exchange_request(agent_id("buyer"), "wallet.balance"),
        request_payload=payload(request_envelope()),
        issued_at_ms=1_795_255_211_003,
        nonce="Tz5Ux8Vy1Wz4Xa7Yb0Zc3D",
    )


def fields_text(fields: dict[str, object]) -> str:
    return "\n".join(f"{name}: {value}" for name, value in fields.items())


def connection_fields() -> dict[str, object]:
    keys = fixed_keys()["buyer"]
    signature = keys.sign(SERVER_NONCE.encode())
    return {
        "seed_text": keys.seed_text().decode(),
        "server_nonce": SERVER_NONCE,
        "nkey": keys.agent_id,
        "sig_base64": base64.b64encode(signature).decode(),
        "sig_base64url": b64encode(signature),
    }


def fee_rows() -> str:
    rows = []
    for price, rate_bps, share_bps in FEE_CASES:
        share = provider_share_for_bps(price, provider_share_bps=share_bps)
        settlement = settlement_for(price, provider_share_millicredits=share, fee_rate_bps=rate_bps)
        rows.append(
            f"{price} {rate_bps} {share_bps} {settlement.fee_millicredits} "
            f"{settlement.net_millicredits} {settlement.refunded_millicredits}"
        )
    return "\n".join(rows)


def rebuilt_vectors() -> dict[str, str]:
    """Every vector of the document that the code computes, as its block's text."""
    quote_bytes = doc_bytes(quote_envelope())
    acceptance_bytes = doc_bytes(acceptance_envelope())
    request_subject = subjects.exchange_request(agent_id("buyer"), "wallet.balance")
    return {
        "rfq.envelope": payload(rfq_envelope()).decode(),
        "connection": fields_text(connection_fields()),
        "request.doc": doc_bytes(request_envelope()).decode(),
        "request.envelope": payload(request_envelope()).decode(),
        "request.hashes": fields_text(
            {
                "payload_sha256": sha256_hex(payload(request_envelope())),
                "clock_ms": REQUEST_CLOCK_MS,
            }
        ),
        "quote.envelope": payload(quote_envelope()).decode(),
        "quote.doc": quote_bytes.decode(),
        "quote.hashes": fields_text(
            {
                "quote_sha256": sha256_hex(quote_bytes),
                "contract_id": contract_id_for(quote_envelope()),
                "clock_ms": QUOTE_CLOCK_MS,
            }
        ),
        "acceptance.doc": acceptance_bytes.decode(),
        "acceptance.envelope": payload(acceptance_envelope()).decode(),
        "acceptance.hashes": fields_text(
            {
                "acceptance_sha256": sha256_hex(acceptance_bytes),
                "payload_sha256": sha256_hex(payload(acceptance_envelope())),
                "clock_ms": ACCEPTANCE_CLOCK_MS,
            }
        ),
        "record.doc": doc_bytes(record_envelope()).decode(),
        "record.envelope": payload(record_envelope()).decode(),
        "info.expected": fields_text(
            {
                "info_request": INFO_REQUEST.decode(),
                "request_subject": subjects.EXCHANGE_INFO,
                "audience": ANY_AUDIENCE,
                "clock_ms": INFO_CLOCK_MS,
                "request_sha256": sha256_hex(INFO_REQUEST),
                "signer": agent_id("exchange"),
                "protocol_version": limits.PROTOCOL_VERSION,
                "portal_id": agent_id("portal"),
            }
        ),
        "info.reply": info_reply().decode(),
        "reply.envelope": balance_reply().decode(),
        "reply.expected": fields_text(
            {
                "request_subject": request_subject,
                "audience": agent_id("buyer"),
                "signer": agent_id("exchange"),
                "clock_ms": REQUEST_CLOCK_MS,
                "request_sha256": sha256_hex(payload(request_envelope())),
                "outcome": "verified",
            }
        ),
        "reply.body": json_encoder.encode(balance_body()).decode(),
        "reply.other_request": payload(other_request_envelope()).decode(),
        "reply.mismatch": fields_text(
            {
                "clock_ms": OTHER_REQUEST_CLOCK_MS,
                "request_sha256": sha256_hex(payload(other_request_envelope())),
                "outcome": ErrorCode.REPLY_MISMATCH.value,
            }
        ),
        "result": fields_text({"bytes": RESULT.decode(), "sha256": sha256_hex(RESULT)}),
        "fees": fee_rows(),
    }


# --- Reading the document ---------------------------------------------------------


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
    assert [row[0] for row in rows] == list(KEY_NAMES)
    return {name: AgentKeys.from_seed(seed_text) for name, _, _, seed_text, _ in rows}


def opened(envelope_bytes: bytes) -> Any:
    return open_envelope(envelope_bytes, size_max=limits.REPLY_BYTES_MAX)


def assert_signature_reproduces(verified: Any, keys: AgentKeys) -> None:
    """ed25519 is deterministic: the seed signs the doc bytes to the same sig."""
    assert b64encode(keys.sign(verified.document_bytes)) == verified.envelope.sig


def json_examples() -> Iterator[tuple[int, Any]]:
    """Each JSON object with a ``kind`` shown in a ```json block, with its line number."""
    text = protocol_text()
    for block in JSON_BLOCK.finditer(text):
        line = text.count("\n", 0, block.start()) + 1
        body = textwrap.dedent(block.group(2))
        try:
            values = [json.loads(body)]
        except json.JSONDecodeError:
            # Several one-line objects in one block (the error examples).
            values = [json.loads(part) for part in body.splitlines() if part.startswith("{")]
        for value in values:
            if isinstance(value, dict) and "kind" in value:
                yield line, value


def without_cuts(value: Any) -> Any:
    """The example with each cut string (``abc…``) shortened to what is shown."""
    if isinstance(value, dict):
        return {key: without_cuts(item) for key, item in value.items()}
    if isinstance(value, list):
        return [without_cuts(item) for item in value]
    if isinstance(value, str):
        return value.removesuffix(CUT)
    return value


def same_shape(shown: Any, actual: Any, path: str = "$") -> None:
    """Same keys in the same order, same JSON types and values; ``abc…`` is a prefix."""
    if isinstance(shown, str) and shown.endswith(CUT):
        assert isinstance(actual, str), path
        assert actual.startswith(shown.removesuffix(CUT)), path
        return
    assert type(shown) is type(actual), f"{path}: {shown!r} is not {actual!r}"
    if isinstance(shown, dict):
        assert list(shown) == list(actual), f"{path}: fields {list(shown)} != {list(actual)}"
        for key in shown:
            same_shape(shown[key], actual[key], f"{path}.{key}")
    elif isinstance(shown, list):
        assert len(shown) == len(actual), path
        for index, (item, actual_item) in enumerate(zip(shown, actual, strict=True)):
            same_shape(item, actual_item, f"{path}[{index}]")
    else:
        assert shown == actual, f"{path}: {shown!r} != {actual!r}"


# --- 1. Appendix A is what the code builds ----------------------------------------


def test_the_document_names_each_vector_once_and_the_code_rebuilds_them_all():
    assert set(vectors()) == set(rebuilt_vectors()) | CHECKED_ONLY_VECTORS


@pytest.mark.parametrize("name", sorted(rebuilt_vectors()))
def test_the_vector_is_what_the_code_builds_from_the_fixed_inputs(name: str):
    assert vectors()[name] == rebuilt_vectors()[name]


def test_the_key_table_is_the_keys_of_the_fixed_seeds():
    appendix = protocol_text().split("## Appendix A", 1)[1]
    rows = KEY_ROW.findall(appendix)
    assert [row[0] for row in rows] == list(KEY_NAMES)
    for name, seed_hex, public_hex, seed_text, documented_id in rows:
        keys = fixed_keys()[name]
        assert key_seed(name).hex() == seed_hex
        assert bytes(nacl.signing.SigningKey(key_seed(name)).verify_key).hex() == public_hex
        assert keys.seed_text().decode() == seed_text
        assert keys.agent_id == documented_id == documented_keys()[name].agent_id
        assert is_agent_id(documented_id)
    assert 'crc16("123456789") = 0x31C3' in protocol_text()
    assert nkeys.crc16(bytearray(b"123456789")) == 0x31C3


# --- 2. The vectors verify, and the hashes the appendix states hold -----------------


def test_the_connection_vector_passes_the_auth_callouts_check():
    fields = vector_fields("connection")
    public_key = decode_public_nkey(fields["nkey"], prefix_byte=nkeys.PREFIX_BYTE_USER)
    assert public_key is not None
    for encoded in (fields["sig_base64"], fields["sig_base64url"]):
        assert verify_nonce_signature(public_key, fields["server_nonce"], encoded)
        assert not verify_nonce_signature(public_key, "another nonce", encoded)
    assert f'"nkey":"{fields["nkey"]}","sig":"{fields["sig_base64"]}"' in protocol_text()


def test_the_request_verifies_and_its_payload_is_what_a_reply_names():
    buyer = documented_keys()["buyer"]
    request = opened(vector_bytes("request.envelope"))
    assert request.document_bytes == vector_bytes("request.doc")
    verify_request(
        request,
        subject=subjects.exchange_request(buyer.agent_id, "wallet.balance"),
        subject_agent_id=buyer.agent_id,
        clock=FixedClock(int(vector_fields("request.hashes")["clock_ms"])),
        replay_guard=ReplayGuard(),
    )
    assert_signature_reproduces(request, buyer)
    payload_sha256 = vector_fields("request.hashes")["payload_sha256"]
    assert payload_sha256 == sha256_hex(vector_bytes("request.envelope"))
    assert payload_sha256 == vector_fields("reply.expected")["request_sha256"]
    # The payload hash is not the document hash.
    assert payload_sha256 != sha256_hex(vector_bytes("request.doc"))


def test_the_quote_verifies_and_hashes_to_its_contract_id():
    keys = documented_keys()
    verified = opened(vector_bytes("quote.envelope"))
    assert verified.document_bytes == vector_bytes("quote.doc")
    hashes = vector_fields("quote.hashes")
    quote = verify_evidence(
        verified,
        expected_type=Quote,
        audience=keys["buyer"].agent_id,
        issuer=keys["provider"].agent_id,
        expected_subject=subjects.rfq(CAPABILITY),
        clock=FixedClock(int(hashes["clock_ms"])),
        lifetime_max_s=limits.QUOTE_VALIDITY_MAX_S,
    )
    assert_signature_reproduces(quote, keys["provider"])
    assert sha256_hex(vector_bytes("quote.doc")) == hashes["quote_sha256"]
    assert hashes["contract_id"] == "c_" + hashes["quote_sha256"][:32]


def test_the_acceptance_embeds_the_quote_unchanged_and_the_record_names_both():
    keys = documented_keys()
    hashes = vector_fields("acceptance.hashes")
    clock = FixedClock(int(hashes["clock_ms"]))
    acceptance = opened(vector_bytes("acceptance.envelope"))
    assert acceptance.document_bytes == vector_bytes("acceptance.doc")
    verify_request(
        acceptance,
        subject=subjects.exchange_request(keys["buyer"].agent_id, "contract.open"),
        subject_agent_id=keys["buyer"].agent_id,
        clock=clock,
        replay_guard=ReplayGuard(),
    )
    assert_signature_reproduces(acceptance, keys["buyer"])
    document = acceptance.document
    assert isinstance(document, OpenContract)
    assert bytes(document.task) == TASK
    # Section 3.8: the embedded quote's bytes are its `doc` string, decoded;
    # any JSON parser gets them, and they are the quote's own bytes.
    embedded = json.loads(vector_bytes("acceptance.doc"))["quote"]
    assert b64decode(embedded["doc"]) == vector_bytes("quote.doc")
    assert json_encoder.encode(document.quote) == vector_bytes("quote.envelope")
    quote_hashes = vector_fields("quote.hashes")
    assert sha256_hex(b64decode(embedded["doc"])) == quote_hashes["quote_sha256"]
    # acceptance_sha256 is over the document's bytes; the payload hashes otherwise.
    assert sha256_hex(vector_bytes("acceptance.doc")) == hashes["acceptance_sha256"]
    assert sha256_hex(vector_bytes("acceptance.envelope")) == hashes["payload_sha256"]
    assert hashes["acceptance_sha256"] != hashes["payload_sha256"]
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
    assert record.document_bytes == vector_bytes("record.doc")
    assert_signature_reproduces(record, keys["exchange"])
    contract = record.document
    assert isinstance(contract, ContractRecord)
    assert contract.contract_id == contract_id
    assert contract.quote_sha256 == quote_hashes["quote_sha256"]
    assert contract.acceptance_sha256 == hashes["acceptance_sha256"]
    assert contract.buyer_id == keys["buyer"].agent_id
    assert contract.provider_id == keys["provider"].agent_id


def test_the_info_reply_answers_the_nonce_and_names_its_signer():
    expected = vector_fields("info.expected")
    keys = documented_keys()
    request = expected["info_request"].encode()
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
        assert signer == expected["signer"]
        assert isinstance(body, InfoReply)
        assert body.exchange_id == signer
        assert body.portal_id == expected["portal_id"]
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
    signer, body = open_reply(
        vector_bytes("reply.envelope"),
        signer_id=documented_keys()["exchange"].agent_id,
        audience=expected["audience"],
        request_subject=expected["request_subject"],
        request_payload=vector_bytes("request.envelope"),
        clock=FixedClock(int(expected["clock_ms"])),
    )
    assert expected["outcome"] == "verified"
    assert signer == expected["signer"]
    assert isinstance(body, BalanceReply)
    assert json_encoder.encode(body) == vector_bytes("reply.body")


def test_the_same_reply_for_another_request_is_a_reply_mismatch():
    mismatch = vector_fields("reply.mismatch")
    expected = vector_fields("reply.expected")
    other_request = vector_bytes("reply.other_request")
    assert other_request != vector_bytes("request.envelope")
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
        subject=subjects.rfq(CAPABILITY),
        subject_agent_id=None,
        clock=FixedClock(RFQ_CLOCK_MS),
        replay_guard=ReplayGuard(),
    )
    assert isinstance(rfq.document, Rfq)
    assert rfq.document.header.audience == "providers"
    assert_signature_reproduces(rfq, documented_keys()["buyer"])
    prose = " ".join(protocol_text().split())
    assert f"as a request on `{subjects.rfq(CAPABILITY)}` at `{RFQ_CLOCK_MS}`" in prose


def test_the_sealed_result_opens_with_the_buyers_key():
    sealed = vector_fields("sealed")
    buyer = documented_keys()["buyer"]
    assert sealed["recipient"] == buyer.agent_id
    assert bytes(buyer.box_private_key()).hex() == sealed["x25519_secret"]
    assert bytes(buyer.box_private_key().public_key).hex() == sealed["x25519_public"]
    assert sealed["plaintext"].encode() == RESULT
    result_bytes = sealed["result_bytes"].encode()
    assert sha256_hex(result_bytes) == sealed["result_sha256"]
    ciphertext = b64decode(msgspec.json.decode(result_bytes, type=str))
    assert len(ciphertext) == len(RESULT) + 48
    assert open_sealed(buyer, ciphertext) == RESULT


def test_every_envelope_printed_in_full_verifies_under_the_current_root():
    envelopes = FULL_ENVELOPE.findall(protocol_text())
    assert len(envelopes) >= len([name for name in vectors() if name.endswith(".envelope")])
    for text in envelopes:
        verified = opened(text.encode())
        header_ = verified.document.header
        assert header_.subject.startswith(subjects.ROOT + "."), header_.subject
        assert b"agentx.v1" not in verified.document_bytes
        signer = next(keys for keys in fixed_keys().values() if keys.agent_id == header_.issuer)
        assert_signature_reproduces(verified, signer)


# --- 3. The examples match the structs --------------------------------------------

DOCUMENT_DECODER: msgspec.json.Decoder[Document] = msgspec.json.Decoder(Document)
REPLY_DECODER: msgspec.json.Decoder[Reply] = msgspec.json.Decoder(Reply)


def decoder_for(example: dict[str, Any]) -> Callable[[bytes], Any]:
    # A document has a header; a reply body (the later steps of section 1.4) has none.
    return DOCUMENT_DECODER.decode if "header" in example else REPLY_DECODER.decode


def test_every_example_has_the_fields_of_its_struct_in_order_with_their_types():
    checked = 0
    for line, example in json_examples():
        encoded = json.dumps(without_cuts(example), ensure_ascii=False).encode()
        try:
            decoded = decoder_for(example)(encoded)
        except msgspec.ValidationError as exc:
            pytest.fail(f"docs/PROTOCOL.md line {line}: the {example['kind']} example: {exc}")
        rebuilt = json.loads(json_encoder.encode(decoded))
        try:
            same_shape(example, rebuilt)
        except AssertionError as exc:
            pytest.fail(f"docs/PROTOCOL.md line {line}: the {example['kind']} example: {exc}")
        checked += 1
    assert checked >= 40


def test_the_examples_of_vector_documents_show_the_vectors_bytes():
    """A document shown indented is the vector's document when it has its nonce."""
    by_nonce: dict[str, Any] = {}
    for text in vectors().values():
        if FULL_ENVELOPE.fullmatch(text):
            document = json.loads(b64decode(json.loads(text)["doc"]))
            by_nonce[document["header"]["nonce"]] = document
    shown = 0
    for _, example in json_examples():
        nonce = example.get("header", {}).get("nonce")
        if nonce in by_nonce:
            same_shape(example, by_nonce[nonce])
            shown += 1
    # The RFQ, the quote, the acceptance, the record, info, the balance request.
    assert shown >= 6


# Structs described in sections 5.2 and 5.3 by a table after "`Name`:", or
# by a list of their fields in one sentence.
FIELD_TABLE_STRUCTS: dict[str, type[msgspec.Struct]] = {
    "Listing": Listing,
    "Reputation": Reputation,
    "ContractView": ContractView,
    "ContractEventEntry": ContractEventEntry,
    "TransactionEntry": TransactionEntry,
}
FIELD_LIST_STRUCTS: dict[str, type[msgspec.Struct]] = {
    "ListingRevision": ListingRevision,
    "RatingEntry": RatingEntry,
}
TABLE = re.compile(r"^\| field \|[^\n]*\n\|---[^\n]*\n((?:\|[^\n]*\n)+)", re.MULTILINE)
KIND_HEADING = re.compile(r"^#### `([A-Za-z_.]+)`", re.MULTILINE)


def section(title: str, next_title: str) -> str:
    text = protocol_text()
    start = text.index(title)
    return text[start : text.index(next_title, start)]


def table_fields(text: str) -> list[str] | None:
    """The field names of the first table in ``text``: the first column's `names`."""
    table = TABLE.search(text)
    if table is None:
        return None
    return [
        name
        for row in table.group(1).splitlines()
        for name in re.findall(r"`([a-z0-9_]+)`", row.split("|")[1])
    ]


def wire_fields(struct: type[msgspec.Struct]) -> list[str]:
    return [name for name in struct.__struct_fields__ if name != "header"]


def test_the_field_tables_name_each_structs_fields_in_order():
    by_tag = {
        "documents": {t.__struct_config__.tag: t for t in Document.__args__},
        "replies": {t.__struct_config__.tag: t for t in Reply.__args__},
    }
    sections = {
        "documents": section("### 5.2 Documents", "### 5.3 "),
        "replies": section("### 5.3 Replies", "### 5.4 "),
    }
    checked = 0
    for family, text in sections.items():
        headings = list(KIND_HEADING.finditer(text))
        for index, heading in enumerate(headings):
            kind = heading.group(1)
            struct = Envelope if kind == "Envelope" else by_tag[family].get(kind)
            assert struct is not None, f"section 5: `{kind}` is not a kind of the {family}"
            end = headings[index + 1].start() if index + 1 < len(headings) else len(text)
            body = text[heading.end() : end]
            first_table = TABLE.search(body)
            # A table after a "`Struct`:" line describes that struct, not this one.
            if first_table is None or re.search(r"^`[A-Z]\w+`", body[: first_table.start()], re.M):
                assert wire_fields(struct) == [], f"`{kind}` has fields but no table"
            else:
                assert table_fields(body) == wire_fields(struct), f"the table of `{kind}`"
            checked += 1
    replies = sections["replies"]
    for name, struct in FIELD_TABLE_STRUCTS.items():
        shown = table_fields(replies[replies.index(f"\n`{name}`") :])
        assert shown == wire_fields(struct), f"the table of {name}"
    for name, struct in FIELD_LIST_STRUCTS.items():
        sentence = replies[replies.index(f"\n`{name}`: ") :].split(".\n", 1)[0]
        assert re.findall(r"`([a-z0-9_]+)`", sentence) == wire_fields(struct), name
    assert checked >= 50


if __name__ == "__main__":
    for vector_name, vector_text in rebuilt_vectors().items():
        print(f"Vector `{vector_name}`:\n\n```\n{vector_text}\n```\n")
