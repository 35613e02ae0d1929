"""The few NATS JWTs an auth callout reads and writes, and the nkeys that sign them (pure).

nats-server's auth callout speaks in JWTs (github.com/nats-io/jwt, v2):
the server sends an *authorization request* signed by its own server key
(``N...``); the callout answers with an *authorization response*, signed by
the issuer account key (``A...``) named in the server config, that carries
either an error or a *user* JWT with the connection's permissions.

No maintained Python library writes these, so this module does, keeping to
the three claim types above. A JWT is ``header.claims.signature``, each part
unpadded base64url; the header is fixed (``{"typ":"JWT","alg":"ed25519-nkey"}``);
the signature is ed25519 over ``header.claims`` by the key named in ``iss``.
``jti`` is the base32 of SHA-512/256 over the generic claims with an empty
``jti``, as the Go library computes it (nats-server does not check it, but a
token should be what it says it is).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from typing import Final, TypeVar

import msgspec
import nacl.exceptions
import nacl.signing
import nkeys

from broker.errors import JwtInvalid
from broker.limits import JWT_BYTES_MAX

__all__ = [
    "AUTHORIZATION_REQUEST_AUDIENCE",
    "AuthorizationRequest",
    "AuthorizationRequestClaims",
    "AuthorizationResponse",
    "AuthorizationResponseClaims",
    "ClientInformation",
    "ConnectOptions",
    "NkeyPair",
    "ResponsePermission",
    "SubjectPermission",
    "UserClaims",
    "UserPermissions",
    "decode_jwt",
    "decode_public_nkey",
    "encode_jwt",
    "verify_nonce_signature",
]

AUTHORIZATION_REQUEST_AUDIENCE: Final = "nats-authorization-request"
_HEADER_PART: Final = (
    base64.urlsafe_b64encode(b'{"typ":"JWT","alg":"ed25519-nkey"}').rstrip(b"=").decode()
)
_NKEY_TEXT_LENGTH: Final = 56
_JWT_VERSION: Final = 2
# nkeys encodes a public key as base32 of prefix byte + 32 key bytes + CRC-16.
_PUBLIC_KEY_BYTES: Final = 32

_ClaimsT = TypeVar("_ClaimsT", bound="_Claims")


class NkeyPair:
    """An ed25519 signing key named by its nkey public text (``A...``, ``U...``).

    ``repr`` never shows the seed.
    """

    __slots__ = ("_signing_key", "public_key")

    def __init__(self, signing_key: nacl.signing.SigningKey, /, *, prefix_byte: int) -> None:
        self._signing_key = signing_key
        self.public_key = _encode_public_nkey(bytes(signing_key.verify_key), prefix_byte)

    @classmethod
    def generate(cls, *, prefix_byte: int) -> NkeyPair:
        return cls(nacl.signing.SigningKey(os.urandom(32)), prefix_byte=prefix_byte)

    def seed_text(self, *, prefix_byte: int) -> str:
        """The nkey seed (``SA...``, ``SU...``): what a NATS client connects with."""
        encoded: bytes = nkeys.encode_seed(bytes(self._signing_key), prefix_byte)
        return encoded.decode()

    def sign(self, data: bytes, /) -> bytes:
        signature: bytes = self._signing_key.sign(data).signature
        return signature

    def __repr__(self) -> str:
        return f"NkeyPair(public_key={self.public_key!r})"


def _encode_public_nkey(public_key: bytes, prefix_byte: int) -> str:
    body = bytes([prefix_byte]) + public_key
    checksum = nkeys.crc16(bytearray(body)).to_bytes(2, byteorder="little")
    return base64.b32encode(body + checksum).decode()


def decode_public_nkey(text: str, /, *, prefix_byte: int) -> bytes | None:
    """The 32 key bytes of an nkey public text with this prefix, or None if it is not one."""
    if len(text) != _NKEY_TEXT_LENGTH:
        return None
    try:
        raw = base64.b32decode(text)
    except (binascii.Error, ValueError):
        return None
    body, checksum = raw[:-2], raw[-2:]
    if body[0] != prefix_byte or len(body) != 1 + _PUBLIC_KEY_BYTES:
        return None
    if nkeys.crc16(bytearray(body)).to_bytes(2, byteorder="little") != checksum:
        return None
    return body[1:]


def verify_nonce_signature(public_key: bytes, nonce: str, signature_text: str, /) -> bool:
    """True when ``signature_text`` is the key's ed25519 signature of the nonce.

    Clients send it in standard base64 (nats-py) or raw base64url (the Go
    client); nats-server accepts both, so do we.
    """
    signature = _decode_base64_any(signature_text)
    if signature is None:
        return False
    try:
        nacl.signing.VerifyKey(public_key).verify(nonce.encode(), signature)
    except (nacl.exceptions.BadSignatureError, ValueError):
        return False
    return True


def _decode_base64_any(text: str) -> bytes | None:
    padded = text + "=" * (-len(text) % 4)
    for decode in (base64.urlsafe_b64decode, base64.standard_b64decode):
        try:
            return decode(padded)
        except (binascii.Error, ValueError):
            continue
    return None


# --- claims ------------------------------------------------------------------------
# Field names and order follow the Go structs; empty values are left out, as
# Go's ``omitempty`` does.


class _Claims(msgspec.Struct, kw_only=True, omit_defaults=True):
    aud: str = ""
    exp: int = 0
    jti: str = ""
    iat: int = 0
    iss: str = ""
    name: str = ""
    nbf: int = 0
    sub: str = ""


class _GenericClaims(_Claims, kw_only=True, omit_defaults=True):
    """Only the generic part, for the ``jti`` hash."""


class ServerId(msgspec.Struct, kw_only=True):
    id: str
    name: str = ""
    host: str = ""
    version: str = ""
    cluster: str = ""


class ClientInformation(msgspec.Struct, kw_only=True):
    host: str = ""
    id: int = 0
    user: str = ""
    name: str = ""
    kind: str = ""
    type: str = ""
    nonce: str = ""


class ConnectOptions(msgspec.Struct, kw_only=True):
    jwt: str = ""
    nkey: str = ""
    sig: str = ""
    auth_token: str = ""
    user: str = ""
    name: str = ""
    lang: str = ""
    version: str = ""
    protocol: int = 0


class AuthorizationRequest(msgspec.Struct, kw_only=True):
    server_id: ServerId
    user_nkey: str
    client_info: ClientInformation = msgspec.field(default_factory=ClientInformation)
    connect_opts: ConnectOptions = msgspec.field(default_factory=ConnectOptions)
    request_nonce: str = ""
    type: str = ""
    version: int = 0


class AuthorizationRequestClaims(_Claims, kw_only=True, omit_defaults=True):
    nats: AuthorizationRequest


class SubjectPermission(msgspec.Struct, kw_only=True, frozen=True):
    allow: tuple[str, ...] = ()
    deny: tuple[str, ...] = ()


class ResponsePermission(msgspec.Struct, kw_only=True, frozen=True):
    """May publish ``max`` replies to each request received, within ``ttl`` (Go nanoseconds)."""

    max: int
    ttl: int


class UserPermissions(msgspec.Struct, kw_only=True, frozen=True):
    """The ``nats`` part of a user JWT: permissions and limits (-1: no limit).

    Every field is written out, defaults included: a JWT without ``type``
    and ``version`` reads as a version-1 claim to nats-server, and a missing
    limit as zero.
    """

    pub: SubjectPermission = SubjectPermission()
    sub: SubjectPermission = SubjectPermission()
    resp: ResponsePermission | None = None
    subs: int = -1
    data: int = -1
    payload: int = -1
    type: str = "user"
    version: int = _JWT_VERSION


class UserClaims(_Claims, kw_only=True, omit_defaults=True):
    nats: UserPermissions


class AuthorizationResponse(msgspec.Struct, kw_only=True):
    """Written out in full, like UserPermissions; one of ``jwt`` and ``error`` is set."""

    jwt: str = ""
    error: str = ""
    type: str = "authorization_response"
    version: int = _JWT_VERSION


class AuthorizationResponseClaims(_Claims, kw_only=True, omit_defaults=True):
    nats: AuthorizationResponse


_encoder = msgspec.json.Encoder()


def encode_jwt(claims: _Claims, signer: NkeyPair, /, *, issued_at_s: int) -> str:
    """Sign ``claims`` as ``signer`` (``iss``, ``iat`` and ``jti`` are set here)."""
    signed = msgspec.structs.replace(claims, iss=signer.public_key, iat=issued_at_s, jti="")
    generic = _GenericClaims(**{name: getattr(signed, name) for name in _Claims.__struct_fields__})
    jti = base64.b32encode(hashlib.new("sha512_256", _encoder.encode(generic)).digest())
    signed = msgspec.structs.replace(signed, jti=jti.decode().rstrip("="))
    signing_input = f"{_HEADER_PART}.{_base64url(_encoder.encode(signed))}"
    return f"{signing_input}.{_base64url(signer.sign(signing_input.encode()))}"


def decode_jwt(
    token: str | bytes, /, *, claims_type: type[_ClaimsT], issuer_prefix: int
) -> _ClaimsT:
    """Decode and verify a JWT signed by an ``issuer_prefix`` key named in its ``iss``.

    Raises JwtInvalid for anything else: oversize, malformed, another
    algorithm, a bad signature. Expiry is the caller's to check.
    """
    text = token.decode("ascii", errors="replace") if isinstance(token, bytes) else token
    if len(text) > JWT_BYTES_MAX:
        raise JwtInvalid(f"over {JWT_BYTES_MAX} B")
    parts = text.split(".")
    if len(parts) != 3 or parts[0] != _HEADER_PART:
        raise JwtInvalid("not an ed25519-nkey JWT")
    try:
        claims = msgspec.json.decode(_unbase64url(parts[1]), type=claims_type)
        signature = _unbase64url(parts[2])
    except (msgspec.DecodeError, binascii.Error, ValueError) as exc:
        raise JwtInvalid(f"malformed: {exc}") from exc
    public_key = decode_public_nkey(claims.iss, prefix_byte=issuer_prefix)
    if public_key is None:
        raise JwtInvalid("the issuer is not a key of the expected kind")
    try:
        signing_input = f"{parts[0]}.{parts[1]}".encode()
        nacl.signing.VerifyKey(public_key).verify(signing_input, signature)
    except (nacl.exceptions.BadSignatureError, ValueError) as exc:
        raise JwtInvalid("the signature does not verify") from exc
    return claims


def _base64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unbase64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
