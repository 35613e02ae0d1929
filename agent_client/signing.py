"""Signing and verifying documents: exact bytes, replay window, typed rejections.

A sender encodes a document to JSON once, signs those bytes and ships both in
an :class:`~agent_client.protocol.Envelope`. A receiver decodes the envelope,
decodes the document from the signed bytes (each only after checking its JSON
nesting depth, so a deep one is ``malformed`` before any decoder recurses),
and checks, in this order:

1. the document's subject is the one it arrived on (or is expected to bear);
2. expiry comes after issued-at (else ``malformed``), issued-at is within the
   clock-skew window, expiry is in the future and the lifetime is within the
   limit for that use;
3. (issuer, nonce) was not seen within the window;
4. the signature over the exact bytes, with the issuer's key;
5. the agent id in the subject (if any) equals the signer.

Each failure raises :class:`~agent_client.errors.SignatureRejected` with a
stable code. The nonce is remembered only once every check has passed, so a
forged message can never burn a genuine sender's nonce.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import heapq
import re
import secrets
import time
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

import msgspec
import nacl.exceptions

from agent_client import limits
from agent_client.errors import SignatureRejected
from agent_client.keys import AgentKeys, verify_key_for
from agent_client.protocol import (
    DOCUMENT_KINDS,
    Document,
    Envelope,
    ErrorCode,
    Header,
    document_decoder,
    envelope_decoder,
    json_encoder,
    kind_probe_decoder,
)

__all__ = [
    "Clock",
    "ReplayGuard",
    "SystemClock",
    "VerifiedDocument",
    "b64decode",
    "b64encode",
    "check_json_depth",
    "make_header",
    "new_nonce",
    "open_envelope",
    "open_envelope_struct",
    "seal",
    "sha256_hex",
    "verify_evidence",
    "verify_request",
]


class Clock(Protocol):
    def now_ms(self) -> int: ...


class SystemClock:
    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000


def b64encode(data: bytes, /) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64decode(text: str, /) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def sha256_hex(data: bytes, /) -> str:
    return hashlib.sha256(data).hexdigest()


def new_nonce() -> str:
    return b64encode(secrets.token_bytes(limits.NONCE_BYTES))


def make_header(
    keys: AgentKeys,
    *,
    audience: str,
    subject: str,
    lifetime_s: float,
    clock: Clock,
) -> Header:
    issued_at_ms = clock.now_ms()
    return Header(
        issuer=keys.agent_id,
        audience=audience,
        subject=subject,
        issued_at_ms=issued_at_ms,
        expires_at_ms=issued_at_ms + int(lifetime_s * 1000),
        nonce=new_nonce(),
    )


def seal(document: Document, keys: AgentKeys, /) -> Envelope:
    """Sign a document with the issuer's keys; the header must name them."""
    assert document.header.issuer == keys.agent_id, "a document is signed by its issuer"
    document_bytes = json_encoder.encode(document)
    return Envelope(doc=b64encode(document_bytes), sig=b64encode(keys.sign(document_bytes)))


_D = TypeVar("_D", bound=Document, covariant=True)


@dataclass(frozen=True, slots=True)
class VerifiedDocument(Generic[_D]):
    """A decoded document with the exact bytes it was signed as.

    ``verified`` is False until :func:`verify_request` or :func:`verify_evidence`
    accepted it; code acting on a document must only take verified ones. The
    type parameter is the document's type, once a caller has checked it.
    """

    document: _D
    document_bytes: bytes
    signature: bytes
    envelope: Envelope
    verified: bool = False


_BRACES_AS_BRACKETS = bytes.maketrans(b"{}", b"[]")
_NOT_QUOTES_OR_BRACKETS = bytes(byte for byte in range(256) if byte not in b'"[]{}')


def _nesting_pattern(depth_max: int) -> bytes:
    # Balanced brackets at most depth_max deep: a regular language, so a
    # regular expression checks it in one pass. The grammar never needs to
    # backtrack (a "[" always opens a group one level down, a "]" always
    # closes one), so possessive repeats keep the match linear and make it
    # fail as soon as it meets a bracket one level too deep.
    pattern = b""
    for _ in range(depth_max):
        pattern = rb"(?:\[" + pattern + rb"\])*+"
    return pattern


@functools.lru_cache(maxsize=4)
def _nesting_within(depth_max: int) -> re.Pattern[bytes]:
    return re.compile(_nesting_pattern(depth_max))


def _structural_brackets(data: bytes) -> bytes:
    """The brackets of JSON outside its strings, braces written as brackets."""
    # In a string, escaped backslashes and then escaped quotes say nothing of
    # its structure; without them, every quote left opens or closes a string.
    unescaped = data.replace(b"\\\\", b"").replace(b'\\"', b"")
    quotes_and_brackets = unescaped.translate(_BRACES_AS_BRACKETS, _NOT_QUOTES_OR_BRACKETS)
    # Two adjacent quotes leave every bracket on the side of the strings it
    # was on, so they go first: most strings hold no bracket and vanish here.
    # Then the text between an odd quote and the next one is inside a string.
    return b"".join(quotes_and_brackets.replace(b'""', b"").split(b'"')[::2])


def check_json_depth(data: bytes, /, *, depth_max: int = limits.JSON_DEPTH_MAX) -> None:
    """Refuse JSON nested deeper than ``depth_max``, before decoding it.

    Decoders recurse once per level, so untrusted JSON must pass this before
    any of them sees it. Every step runs at C speed, in time linear in the
    input. For valid JSON the check is exact: depth ``depth_max`` passes,
    one more level is refused. Invalid JSON is either refused here
    (as ``malformed``, which it is) or left to the decoder, which stops at
    its first error: the part before it lexes as here, so the decoder never
    nests deeper than the limit.
    """
    if _nesting_within(depth_max).fullmatch(_structural_brackets(data)) is None:
        raise SignatureRejected(
            ErrorCode.MALFORMED, f"JSON nested deeper than {depth_max} levels, or unbalanced"
        )


def open_envelope(
    data: bytes,
    /,
    *,
    size_max: int = limits.MESSAGE_BYTES_MAX,
    depth_max: int = limits.JSON_DEPTH_MAX,
) -> VerifiedDocument[Document]:
    """Decode an envelope's bytes into a document, without trusting it yet.

    ``size_max`` and ``depth_max``: what this message may weigh and how deep
    its document may nest (an agent's message, or a reply of the exchange,
    which may be larger and carries agents' values a little deeper).
    """
    if len(data) > size_max:
        raise SignatureRejected(ErrorCode.PAYLOAD_TOO_LARGE, f"over {size_max} B")
    check_json_depth(data)
    try:
        envelope = envelope_decoder.decode(data)
    except msgspec.DecodeError as exc:
        raise SignatureRejected(ErrorCode.MALFORMED, f"not an envelope: {exc}") from exc
    except RecursionError as exc:
        raise SignatureRejected(ErrorCode.MALFORMED, "nested too deeply") from exc
    return open_envelope_struct(envelope, depth_max=depth_max)


def open_envelope_struct(
    envelope: Envelope, /, *, depth_max: int = limits.JSON_DEPTH_MAX
) -> VerifiedDocument[Document]:
    """Decode the document inside an already decoded envelope, without trusting it yet."""
    try:
        document_bytes = b64decode(envelope.doc)
        signature = b64decode(envelope.sig)
    except ValueError as exc:
        raise SignatureRejected(ErrorCode.MALFORMED, "envelope fields are not base64url") from exc
    check_json_depth(document_bytes, depth_max=depth_max)
    try:
        document = document_decoder.decode(document_bytes)
    except msgspec.DecodeError as exc:
        raise SignatureRejected(_classify_decode_failure(document_bytes), str(exc)) from exc
    except RecursionError as exc:
        raise SignatureRejected(ErrorCode.MALFORMED, "nested too deeply") from exc
    return VerifiedDocument(document, document_bytes, signature, envelope)


def _classify_decode_failure(document_bytes: bytes) -> ErrorCode:
    try:
        kind = kind_probe_decoder.decode(document_bytes).kind
    except (msgspec.DecodeError, RecursionError):
        return ErrorCode.MALFORMED
    return ErrorCode.MALFORMED if kind in DOCUMENT_KINDS else ErrorCode.UNKNOWN_KIND


class ReplayGuard:
    """Remembers (issuer, nonce) pairs until their document expires.

    Each pair is kept as a keyed digest of REPLAY_CACHE_DIGEST_BYTES, a small
    int, in one set for lookups, and in the list of the second after which it
    may be forgotten, so that forgetting takes one heap pop per expired
    second. The key is random per guard, so nobody can make two pairs collide
    on purpose. A collision by chance (probability about entries / 2**56 per
    new pair) only makes an honest request look ``replayed``: a pair that was
    seen always digests to a remembered value, so a replay is never accepted.

    Bounded: expired seconds are forgotten on every ``remember``; if the
    guard is still full it refuses the document (``unavailable``) rather than
    forget a live nonce, which would reopen the replay window. A flood should
    never get there: only requests that passed every check, signature
    included, are remembered, and for at most 120 s (a 60 s lifetime, issued
    up to 30 s ahead, kept 30 s after expiry), so filling the default cache
    takes over 8,000 accepted requests per second. The exchange's connection
    auth lets each agent publish only on its own request subjects, and its
    per-agent rate limits keep any one agent, or a crowd of throwaway keys
    that must each connect, far below that.
    """

    def __init__(self, *, entries_max: int = limits.REPLAY_CACHE_ENTRIES_MAX) -> None:
        assert entries_max > 0
        self._entries_max = entries_max
        self._digest_key = secrets.token_bytes(16)
        self._digests: set[int] = set()
        self._digests_by_second: dict[int, list[int]] = {}
        # The keys of _digests_by_second, earliest first.
        self._seconds: list[int] = []

    def __len__(self) -> int:
        return len(self._digests)

    def seen(self, issuer: str, nonce: str, /) -> bool:
        return self._digest(issuer, nonce) in self._digests

    def remember(self, issuer: str, nonce: str, expires_at_ms: int, *, now_ms: int) -> None:
        digest = self._digest(issuer, nonce)
        # Remembering a pair twice would file it under two seconds, and the
        # earlier would forget it too soon: callers check seen() first.
        assert digest not in self._digests, "remember() a pair only once, after seen()"
        self._forget_expired(now_ms)
        if len(self._digests) >= self._entries_max:
            raise SignatureRejected(ErrorCode.UNAVAILABLE, "replay cache is full, retry later")
        # Rounded up, so a pair is never forgotten before it may be.
        forget_after_s = -(-(expires_at_ms + limits.CLOCK_SKEW_MAX_S * 1000) // 1000)
        bucket = self._digests_by_second.get(forget_after_s)
        if bucket is None:
            bucket = self._digests_by_second[forget_after_s] = []
            heapq.heappush(self._seconds, forget_after_s)
        bucket.append(digest)
        self._digests.add(digest)

    def _digest(self, issuer: str, nonce: str) -> int:
        # The length prefix keeps ("ab", "c") and ("a", "bc") apart.
        pair = f"{len(issuer)}:{issuer}{nonce}".encode()
        digest = hashlib.blake2b(
            pair, digest_size=limits.REPLAY_CACHE_DIGEST_BYTES, key=self._digest_key
        )
        return int.from_bytes(digest.digest(), "little")

    def _forget_expired(self, now_ms: int) -> None:
        while self._seconds and self._seconds[0] * 1000 <= now_ms:
            for digest in self._digests_by_second.pop(heapq.heappop(self._seconds)):
                self._digests.remove(digest)


def verify_request(
    opened: VerifiedDocument[Document],
    /,
    *,
    subject: str,
    subject_agent_id: str | None,
    clock: Clock,
    replay_guard: ReplayGuard,
) -> VerifiedDocument[Document]:
    """Run every receiver check on a request that arrived on ``subject``."""
    header = opened.document.header
    if header.subject != subject:
        raise SignatureRejected(ErrorCode.SUBJECT_MISMATCH, f"signed for {header.subject!r}")
    now_ms = clock.now_ms()
    _check_times(header, now_ms=now_ms, lifetime_max_s=limits.REQUEST_LIFETIME_MAX_S)
    if replay_guard.seen(header.issuer, header.nonce):
        raise SignatureRejected(ErrorCode.REPLAYED, "this nonce was already used")
    _check_signature(opened)
    if subject_agent_id is not None and subject_agent_id != header.issuer:
        raise SignatureRejected(ErrorCode.SIGNER_MISMATCH, "the subject names another agent")
    replay_guard.remember(header.issuer, header.nonce, header.expires_at_ms, now_ms=now_ms)
    return _mark_verified(opened)


def verify_evidence(
    opened: VerifiedDocument[Document],
    /,
    *,
    expected_type: type[Document],
    audience: str | None,
    clock: Clock,
    lifetime_max_s: int,
    expected_subject: str | None = None,
    issuer: str | None = None,
) -> VerifiedDocument[Document]:
    """Check a forwarded document (a quote, a record): kind, audience, time, signature.

    Evidence is not nonce-checked here: the exchange makes each quote
    acceptable once through the contract's unique id instead.
    """
    document = opened.document
    if not isinstance(document, expected_type):
        raise SignatureRejected(ErrorCode.WRONG_KIND, f"expected a {expected_type.__name__}")
    header = document.header
    if expected_subject is not None and header.subject != expected_subject:
        raise SignatureRejected(ErrorCode.SUBJECT_MISMATCH, f"signed for {header.subject!r}")
    if audience is not None and header.audience != audience:
        raise SignatureRejected(ErrorCode.WRONG_AUDIENCE, "addressed to someone else")
    if issuer is not None and header.issuer != issuer:
        raise SignatureRejected(ErrorCode.SIGNER_MISMATCH, "signed by an unexpected party")
    _check_times(header, now_ms=clock.now_ms(), lifetime_max_s=lifetime_max_s)
    _check_signature(opened)
    return _mark_verified(opened)


def _check_times(header: Header, *, now_ms: int, lifetime_max_s: int) -> None:
    # A document from the past is fine while it lives: its bounded lifetime
    # already bounds how old it can be. One from the future means a clock
    # that is off by more than the window, and is refused.
    if header.expires_at_ms <= header.issued_at_ms:
        raise SignatureRejected(ErrorCode.MALFORMED, "expires before it is issued")
    if header.issued_at_ms - now_ms > limits.CLOCK_SKEW_MAX_S * 1000:
        raise SignatureRejected(ErrorCode.CLOCK_SKEW, "issued in the future")
    if header.expires_at_ms <= now_ms:
        raise SignatureRejected(ErrorCode.EXPIRED, "the document has expired")
    if header.expires_at_ms - header.issued_at_ms > lifetime_max_s * 1000:
        raise SignatureRejected(ErrorCode.LIFETIME_TOO_LONG, f"lifetime over {lifetime_max_s} s")


def _check_signature(opened: VerifiedDocument[Document]) -> None:
    verify_key = verify_key_for(opened.document.header.issuer)
    if verify_key is None:
        raise SignatureRejected(ErrorCode.BAD_SIGNATURE, "the issuer is not an agent id")
    try:
        verify_key.verify(opened.document_bytes, opened.signature)
    except (nacl.exceptions.BadSignatureError, ValueError) as exc:
        raise SignatureRejected(ErrorCode.BAD_SIGNATURE, "the signature does not verify") from exc


def _mark_verified(opened: VerifiedDocument[_D]) -> VerifiedDocument[_D]:
    return VerifiedDocument(
        opened.document, opened.document_bytes, opened.signature, opened.envelope, verified=True
    )
