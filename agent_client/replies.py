"""Signed replies: every answer of the exchange and the portal, bound to its request.

The exchange (or the portal) answers a request with a
:class:`~agent_client.protocol.SignedReply` in an envelope: the reply body,
``request_sha256`` (the SHA-256 of the request's exact payload bytes), and a
header naming the exchange as issuer, the requester as audience and the
request's subject. A client believes a reply only after :func:`open_reply`
checked, in order: it is a ``reply`` document; its subject is the request's;
its audience is the requester; its issuer is the signer the client trusts;
its times; its signature; and that it answers this very request. A forged,
replayed or misdirected reply is a
:class:`~agent_client.errors.SignatureRejected`, never a result.

No nonce cache is needed on the client: a reply is only ever matched to the
one request whose hash it carries, and each request is unique (its own
nonce).
"""

from __future__ import annotations

from typing import TypeVar

from agent_client import limits
from agent_client.errors import ProtocolError, SignatureRejected
from agent_client.keys import AgentKeys
from agent_client.protocol import ErrorCode, Reply, SignedReply, json_encoder
from agent_client.signing import (
    Clock,
    make_header,
    open_envelope,
    seal,
    sha256_hex,
    verify_evidence,
)

__all__ = ["ANY_AUDIENCE", "expect_reply", "open_reply", "sign_reply"]

_R = TypeVar("_R", bound=Reply)

# The audience of a reply to a request that names nobody (``info``).
ANY_AUDIENCE = "*"


def sign_reply(
    reply: Reply,
    /,
    *,
    keys: AgentKeys,
    audience: str,
    request_subject: str,
    request_payload: bytes,
    clock: Clock,
) -> bytes:
    """The payload answering the request ``request_payload`` sent on ``request_subject``."""
    header = make_header(
        keys,
        audience=audience,
        subject=request_subject,
        lifetime_s=limits.REPLY_LIFETIME_S,
        clock=clock,
    )
    document = SignedReply(header=header, request_sha256=sha256_hex(request_payload), body=reply)
    return json_encoder.encode(seal(document, keys))


def open_reply(
    data: bytes,
    /,
    *,
    signer_id: str | None,
    audience: str,
    request_subject: str,
    request_payload: bytes,
    clock: Clock,
) -> tuple[str, Reply]:
    """The signer and body of a verified reply to this request.

    ``signer_id`` None accepts any signer (only for learning the exchange's
    id from ``info``; the caller then checks what the body claims).
    """
    verified = verify_evidence(
        open_envelope(data, size_max=limits.REPLY_BYTES_MAX, depth_max=limits.REPLY_JSON_DEPTH_MAX),
        expected_type=SignedReply,
        audience=audience,
        issuer=signer_id,
        expected_subject=request_subject,
        clock=clock,
        lifetime_max_s=limits.REPLY_LIFETIME_S,
    )
    document = verified.document
    assert isinstance(document, SignedReply)
    if document.request_sha256 != sha256_hex(request_payload):
        raise SignatureRejected(ErrorCode.REPLY_MISMATCH, "the reply answers another request")
    return document.header.issuer, document.body


def expect_reply(reply: Reply, expected: type[_R], /) -> _R:
    """The verified reply as the kind the request calls for; any other kind is malformed."""
    if not isinstance(reply, expected):
        raise ProtocolError(ErrorCode.MALFORMED, f"expected a {expected.__name__} reply")
    return reply
