"""Digital goods: an artifact uploaded once, sold many times, sealed to each buyer.

Envelope encryption keeps the artifact (an agent package, or credentials for
a model hosted elsewhere) out of the exchange's reach in clear
(docs/PROTOCOL.md, "Digital goods"):

1. The provider draws a fresh random 32-byte **content key** for each version
   and encrypts the artifact with it (libsodium ``secretbox``,
   XSalsa20-Poly1305: a random 24-byte nonce, then the ciphertext and its
   16-byte tag). Only this ciphertext is uploaded, in chunks (``goods.upload``).
2. It publishes the version (``goods.publish``) with the content key sealed to
   the **exchange's** id (:func:`~agent_client.sealing.seal_to`), and the
   ciphertext's SHA-256 and size. The exchange opens the key in memory only,
   checks that it opens the ciphertext, and keeps the sealed key and the
   ciphertext: nothing in clear.
3. A buyer pays (``goods.buy``) and gets an exchange-signed licence and the
   content key sealed to **its own** id; it reads the chunks
   (``goods.chunk``), checks the hash, opens the key and decrypts.

A licence is evidence: :func:`verify_licence` checks one offline with the
exchange's id alone.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable
from dataclasses import dataclass

import nacl.exceptions
import nacl.secret
import nacl.utils

from agent_client import limits, subjects
from agent_client.errors import ExchangeError, ProtocolError, RequestTimeout, SignatureRejected
from agent_client.keys import AgentKeys
from agent_client.protocol import (
    BuyGoods,
    Document,
    DownloadGoods,
    Envelope,
    ErrorCode,
    GetGoods,
    GetGoodsChunk,
    GoodsAccessReply,
    GoodsChunkReply,
    GoodsChunkStoredReply,
    GoodsKind,
    GoodsLicence,
    GoodsListReply,
    GoodsNotice,
    GoodsReply,
    GoodsView,
    Header,
    ListGoods,
    PublishGoods,
    UploadGoods,
)
from agent_client.replies import expect_reply
from agent_client.sealing import open_sealed, seal_to
from agent_client.signing import (
    Clock,
    SystemClock,
    b64decode,
    b64encode,
    open_envelope_struct,
    sha256_hex,
    verify_evidence,
)
from agent_client.stored_results import Requester, chunk_request

__all__ = [
    "GOODS_NOTICES_KEPT_MAX",
    "GoodsListing",
    "GoodsNotices",
    "GoodsPurchase",
    "buy_goods",
    "decrypt_artifact",
    "download_access",
    "encrypt_artifact",
    "get_goods",
    "goods_item_id",
    "list_goods",
    "next_version",
    "open_access",
    "open_content_key",
    "publish_version",
    "upload_ciphertext",
    "verify_licence",
]

assert nacl.secret.SecretBox.KEY_SIZE == limits.GOODS_CONTENT_KEY_BYTES
assert (
    nacl.secret.SecretBox.NONCE_SIZE + nacl.secret.SecretBox.MACBYTES
    == limits.GOODS_SEALING_OVERHEAD_BYTES
)

_CHUNK_BYTES_MAX = limits.RESULT_CHUNK_BYTES_MAX
# Goods notices an agent keeps until its code asks for them (the oldest go first).
GOODS_NOTICES_KEPT_MAX = 1000


@dataclass(frozen=True, slots=True)
class GoodsPurchase:
    """A version a holder opened: the artifact in clear, and the licence that covers it."""

    licence: GoodsLicence
    licence_envelope: Envelope
    version: int
    artifact: bytes
    # True only when this very request paid (a repeat buy is free).
    charged: bool


@dataclass(frozen=True, slots=True)
class GoodsListing:
    """What a provider says of an item when it publishes a version (the newest wins)."""

    title: str
    capability: str
    price_millicredits: int
    artifact_kind: GoodsKind = "package"
    description: str = ""
    terms: str = ""
    # How many later versions a licence sold from now on covers (None: all).
    updates_included: int | None = None


class GoodsNotices:
    """``notice.goods`` that arrived (new versions, sales), kept until asked for.

    Bounded: past GOODS_NOTICES_KEPT_MAX the oldest is dropped, so an agent
    that never asks does not grow forever.
    """

    def __init__(self) -> None:
        self._queue: asyncio.Queue[GoodsNotice] = asyncio.Queue(maxsize=GOODS_NOTICES_KEPT_MAX)

    def add(self, notice: GoodsNotice, /) -> None:
        if self._queue.full():
            self._queue.get_nowait()
        self._queue.put_nowait(notice)

    async def next(self, *, timeout_s: float) -> GoodsNotice:
        try:
            return await asyncio.wait_for(self._queue.get(), timeout_s)
        except TimeoutError as exc:
            raise RequestTimeout("a goods notice", timeout_s) from exc


def goods_item_id(provider_id: str, slug: str, /) -> str:
    """An item's id: a hash of its provider and its slug, so nobody else can claim it."""
    # A slug never holds "/", so the pair reads back one way only.
    return "g_" + hashlib.sha256(f"{provider_id}/{slug}".encode()).hexdigest()[:32]


def encrypt_artifact(artifact: bytes, /) -> tuple[bytes, bytes]:
    """A fresh content key, and the artifact encrypted with it (nonce, ciphertext, tag)."""
    if len(artifact) > limits.GOODS_ARTIFACT_BYTES_MAX:
        raise ProtocolError(
            ErrorCode.PAYLOAD_TOO_LARGE, f"artifact over {limits.GOODS_ARTIFACT_BYTES_MAX} B"
        )
    content_key = nacl.utils.random(nacl.secret.SecretBox.KEY_SIZE)
    ciphertext = bytes(nacl.secret.SecretBox(content_key).encrypt(artifact))
    assert len(ciphertext) == len(artifact) + limits.GOODS_SEALING_OVERHEAD_BYTES
    return content_key, ciphertext


def decrypt_artifact(content_key: bytes, ciphertext: bytes, /) -> bytes:
    """The artifact, or ``content_key_invalid`` if the key does not open the ciphertext."""
    if len(content_key) != limits.GOODS_CONTENT_KEY_BYTES:
        raise ProtocolError(ErrorCode.CONTENT_KEY_INVALID, "a content key is 32 bytes")
    try:
        return bytes(nacl.secret.SecretBox(content_key).decrypt(ciphertext))
    except nacl.exceptions.CryptoError as exc:
        raise ProtocolError(
            ErrorCode.CONTENT_KEY_INVALID, "the content key does not open the ciphertext"
        ) from exc


def open_content_key(keys: AgentKeys, sealed_key: str, /) -> bytes:
    """A content key sealed to ``keys``' agent id, opened (``content_key_invalid`` if not)."""
    try:
        content_key = open_sealed(keys, b64decode(sealed_key))
    except (ProtocolError, ValueError) as exc:
        raise ProtocolError(
            ErrorCode.CONTENT_KEY_INVALID, "the sealed content key does not open with our key"
        ) from exc
    if len(content_key) != limits.GOODS_CONTENT_KEY_BYTES:
        raise ProtocolError(ErrorCode.CONTENT_KEY_INVALID, "a content key is 32 bytes")
    return content_key


def verify_licence(
    envelope: Envelope,
    /,
    exchange_id: str,
    *,
    clock: Clock | None = None,
    retired_exchange_ids: frozenset[str] = frozenset(),
) -> GoodsLicence:
    """A licence the exchange ``exchange_id`` (or a key it retired) signed: its kind,
    subject, lifetime and signature are checked; raises SignatureRejected otherwise.

    Needs nothing but the envelope and the exchange's id: anyone can run it offline.
    """
    verified = verify_evidence(
        open_envelope_struct(envelope),
        expected_type=GoodsLicence,
        audience=None,
        clock=clock or SystemClock(),
        lifetime_max_s=limits.GOODS_LICENCE_LIFETIME_S,
    )
    licence = verified.document
    assert isinstance(licence, GoodsLicence)
    if licence.header.issuer not in retired_exchange_ids | {exchange_id}:
        raise SignatureRejected(ErrorCode.SIGNER_MISMATCH, "the licence is not the exchange's")
    if licence.header.subject != subjects.goods(licence.item_id):
        raise SignatureRejected(ErrorCode.SUBJECT_MISMATCH, "the licence names another item")
    return licence


# --- uploading and reading the ciphertext ------------------------------------------


async def upload_ciphertext(
    request: Requester, slug: str, version: int, ciphertext: bytes, /
) -> None:
    """Upload a version's ciphertext chunk by chunk (each retried a bounded number of
    times: storing a chunk again stores it once), checking what the exchange kept."""
    if len(ciphertext) > limits.GOODS_CIPHERTEXT_BYTES_MAX:
        raise ProtocolError(
            ErrorCode.PAYLOAD_TOO_LARGE, f"ciphertext over {limits.GOODS_CIPHERTEXT_BYTES_MAX} B"
        )
    chunks = [
        ciphertext[start : start + _CHUNK_BYTES_MAX]
        for start in range(0, len(ciphertext), _CHUNK_BYTES_MAX)
    ]
    for index, chunk in enumerate(chunks):
        build = _upload_builder(slug, version, index, len(chunks), len(ciphertext), chunk)
        reply = await chunk_request(request, UploadGoods, build)
        stored = expect_reply(reply, GoodsChunkStoredReply)
        if (stored.version, stored.index) != (version, index):
            raise ProtocolError(ErrorCode.MALFORMED, "the exchange confirmed another chunk")
        if stored.chunk_sha256 != sha256_hex(chunk):
            raise ProtocolError(
                ErrorCode.HASH_MISMATCH, f"the exchange stored other bytes as chunk {index}"
            )


def _upload_builder(
    slug: str, version: int, index: int, chunk_count: int, size_bytes: int, chunk: bytes
) -> Callable[[Header], Document]:
    def build(header: Header) -> Document:
        return UploadGoods(
            header=header,
            slug=slug,
            version=version,
            index=index,
            chunk_count=chunk_count,
            size_bytes=size_bytes,
            chunk=b64encode(chunk),
        )

    return build


def _chunk_builder(access: GoodsAccessReply, index: int) -> Callable[[Header], Document]:
    def build(header: Header) -> Document:
        return GetGoodsChunk(
            header=header, item_id=access.item_id, version=access.version, index=index
        )

    return build


async def _fetch_ciphertext(request: Requester, access: GoodsAccessReply) -> bytes:
    """A version's ciphertext, chunk by chunk, within the size the access names."""
    if access.chunk_count > limits.RESULT_CHUNKS_MAX or (
        access.size_bytes > limits.GOODS_CIPHERTEXT_BYTES_MAX
    ):
        raise ProtocolError(ErrorCode.PAYLOAD_TOO_LARGE, "the version is over the size limit")
    chunks: list[bytes] = []
    received_bytes = 0
    for index in range(access.chunk_count):
        reply = await chunk_request(request, GetGoodsChunk, _chunk_builder(access, index))
        answer = expect_reply(reply, GoodsChunkReply)
        if (answer.item_id, answer.version, answer.index) != (
            access.item_id,
            access.version,
            index,
        ):
            raise ProtocolError(ErrorCode.MALFORMED, "the exchange answered another chunk")
        chunk = b64decode(answer.chunk)
        received_bytes += len(chunk)
        if received_bytes > access.size_bytes:
            break
        chunks.append(chunk)
    if received_bytes != access.size_bytes:
        raise ProtocolError(ErrorCode.HASH_MISMATCH, "the ciphertext is not the size it claims")
    return b"".join(chunks)


async def open_access(
    request: Requester,
    keys: AgentKeys,
    access: GoodsAccessReply,
    /,
    *,
    exchange_id: str,
    clock: Clock,
    retired_exchange_ids: frozenset[str] = frozenset(),
) -> GoodsPurchase:
    """Check the licence, read the ciphertext, check its hash, open the key, decrypt."""
    licence = verify_licence(
        access.licence, exchange_id, clock=clock, retired_exchange_ids=retired_exchange_ids
    )
    if (licence.buyer_id, licence.item_id) != (keys.agent_id, access.item_id):
        raise ProtocolError(ErrorCode.MALFORMED, "the licence is not ours for this item")
    ciphertext = await _fetch_ciphertext(request, access)
    if sha256_hex(ciphertext) != access.ciphertext_sha256:
        raise ProtocolError(ErrorCode.HASH_MISMATCH, "the ciphertext does not match its hash")
    content_key = open_content_key(keys, access.sealed_key)
    artifact = decrypt_artifact(content_key, ciphertext)
    return GoodsPurchase(licence, access.licence, access.version, artifact, access.charged)


async def download_access(
    request: Requester, item_id: str, version: int | None, /
) -> GoodsAccessReply:
    """A holder's access to a version (None: the newest its licence covers)."""
    reply = await request(
        DownloadGoods,
        lambda header: DownloadGoods(header=header, item_id=item_id, version=version),
    )
    return expect_reply(reply, GoodsAccessReply)


# --- the requests -----------------------------------------------------------------


async def publish_version(
    request: Requester,
    slug: str,
    artifact: bytes,
    /,
    *,
    listing: GoodsListing,
    version: int,
    exchange_id: str,
) -> GoodsView:
    """Encrypt the artifact with a fresh key, upload the ciphertext, and publish it with
    the key sealed to the exchange. The key and the artifact never leave this agent
    in clear."""
    content_key, ciphertext = encrypt_artifact(artifact)
    await upload_ciphertext(request, slug, version, ciphertext)
    sealed_key = b64encode(seal_to(exchange_id, content_key))
    reply = await request(
        PublishGoods,
        lambda header: PublishGoods(
            header=header,
            slug=slug,
            title=listing.title,
            artifact_kind=listing.artifact_kind,
            capability=listing.capability,
            price_millicredits=listing.price_millicredits,
            version=version,
            ciphertext_sha256=sha256_hex(ciphertext),
            size_bytes=len(ciphertext),
            sealed_key=sealed_key,
            description=listing.description,
            terms=listing.terms,
            updates_included=listing.updates_included,
        ),
    )
    return expect_reply(reply, GoodsReply).goods


async def next_version(request: Requester, item_id: str, /) -> int:
    """The version a provider publishes next: 1 for a new item, else the current plus one."""
    try:
        return (await get_goods(request, item_id)).version + 1
    except ExchangeError as exc:
        if exc.code != ErrorCode.NOT_FOUND:
            raise
        return 1


async def get_goods(request: Requester, item_id: str, /) -> GoodsView:
    reply = await request(GetGoods, lambda header: GetGoods(header=header, item_id=item_id))
    return expect_reply(reply, GoodsReply).goods


async def list_goods(
    request: Requester, /, *, provider_id: str | None, limit: int, offset: int
) -> GoodsListReply:
    reply = await request(
        ListGoods,
        lambda header: ListGoods(
            header=header, provider_id=provider_id, limit=limit, offset=offset
        ),
    )
    return expect_reply(reply, GoodsListReply)


async def buy_goods(
    request: Requester, item_id: str, /, *, price_millicredits: int
) -> GoodsAccessReply:
    """Pay for an item (at the price the buyer expects) and get access to its current
    version; a holder gets its licence back and pays nothing."""
    reply = await request(
        BuyGoods,
        lambda header: BuyGoods(
            header=header, item_id=item_id, price_millicredits=price_millicredits
        ),
    )
    return expect_reply(reply, GoodsAccessReply)
