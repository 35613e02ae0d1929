"""Results too large to send inline: the provider uploads them in chunks, the buyer reads
them back (docs/PROTOCOL.md, ``contract.upload`` and ``contract.result``).

Every chunk but the last holds ``limits.RESULT_CHUNK_BYTES_MAX`` bytes. Each
chunk request goes through the agent's one signed request path (a
:data:`Requester`) and is asked again, freshly signed, after a timeout or
``unavailable``: storing a chunk twice stores it once, and reading one
changes nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from msgspec import Struct

from agent_client import limits
from agent_client.errors import ExchangeError, ProtocolError, RequestTimeout
from agent_client.protocol import (
    ChunkStoredReply,
    Document,
    ErrorCode,
    GetResult,
    Header,
    Reply,
    ResultChunkReply,
    ResultRef,
    UploadResult,
    endpoint_of,
)
from agent_client.replies import expect_reply
from agent_client.signing import b64decode, b64encode, sha256_hex

__all__ = ["Requester", "chunk_request", "fetch_result", "store_result"]

log = logging.getLogger(__name__)

# The agent's signed request to the exchange: the request's document type (its
# tag names the endpoint) and a function that builds the document from a fresh
# header; the verified reply.
Requester = Callable[[type[Struct], Callable[[Header], Document]], Awaitable[Reply]]


async def store_result(request: Requester, contract_id: str, result_bytes: bytes, /) -> ResultRef:
    """Upload a result too large to send inline, chunk by chunk, before delivering it.

    A chunk the exchange refuses with ``invalid_state`` means the contract is no
    longer open, perhaps delivered by an earlier try of this very delivery
    whose answer was lost: the deliver request that follows then says
    whether the contract holds this result.
    """
    if len(result_bytes) > limits.RESULT_OBJECT_BYTES_MAX:
        raise ProtocolError(
            ErrorCode.PAYLOAD_TOO_LARGE, f"result over {limits.RESULT_OBJECT_BYTES_MAX} B"
        )
    chunk_bytes_max = limits.RESULT_CHUNK_BYTES_MAX
    chunks = [
        result_bytes[start : start + chunk_bytes_max]
        for start in range(0, len(result_bytes), chunk_bytes_max)
    ]
    reference = ResultRef(size_bytes=len(result_bytes), chunk_count=len(chunks))
    for index, chunk in enumerate(chunks):
        try:
            await _upload_chunk(request, contract_id, reference, index, chunk)
        except ExchangeError as exc:
            if exc.code != ErrorCode.INVALID_STATE:
                raise
            break
    return reference


async def _upload_chunk(
    request: Requester, contract_id: str, reference: ResultRef, index: int, chunk: bytes
) -> None:
    reply = await chunk_request(
        request,
        UploadResult,
        lambda header: UploadResult(
            header=header,
            contract_id=contract_id,
            index=index,
            chunk_count=reference.chunk_count,
            size_bytes=reference.size_bytes,
            chunk=b64encode(chunk),
        ),
    )
    stored = expect_reply(reply, ChunkStoredReply)
    if (stored.contract_id, stored.index) != (contract_id, index):
        raise ProtocolError(
            ErrorCode.MALFORMED, f"the exchange confirmed another chunk than {index}"
        )
    if stored.chunk_sha256 != sha256_hex(chunk):
        raise ProtocolError(
            ErrorCode.HASH_MISMATCH, f"the exchange stored other bytes as chunk {index}"
        )


async def fetch_result(request: Requester, contract_id: str, reference: ResultRef, /) -> bytes:
    """A stored result, read back from the exchange chunk by chunk, within its size."""
    # The reference was decoded within the ceilings (RESULT_CHUNKS_MAX chunks,
    # RESULT_OBJECT_BYTES_MAX bytes), so this loop and what it keeps are bounded.
    chunks: list[bytes] = []
    received_bytes = 0
    for index in range(reference.chunk_count):
        chunk = await _read_chunk(request, contract_id, reference, index)
        received_bytes += len(chunk)
        if received_bytes > reference.size_bytes:
            break
        chunks.append(chunk)
    if received_bytes != reference.size_bytes:
        raise ProtocolError(
            ErrorCode.HASH_MISMATCH,
            f"the stored result is not the {reference.size_bytes} B it claims",
        )
    return b"".join(chunks)


async def _read_chunk(
    request: Requester, contract_id: str, reference: ResultRef, index: int
) -> bytes:
    reply = await chunk_request(
        request,
        GetResult,
        lambda header: GetResult(header=header, contract_id=contract_id, index=index),
    )
    answer = expect_reply(reply, ResultChunkReply)
    if (answer.contract_id, answer.index, answer.size_bytes, answer.chunk_count) != (
        contract_id,
        index,
        reference.size_bytes,
        reference.chunk_count,
    ):
        raise ProtocolError(
            ErrorCode.MALFORMED, f"the exchange answered another chunk than {index}"
        )
    if len(answer.chunk) > limits.RESULT_CHUNK_TEXT_LENGTH_MAX:
        raise ProtocolError(ErrorCode.PAYLOAD_TOO_LARGE, f"chunk {index} is over the chunk limit")
    try:
        return b64decode(answer.chunk)
    except ValueError as exc:
        raise ProtocolError(ErrorCode.MALFORMED, f"chunk {index} is not base64url") from exc


async def chunk_request(
    request: Requester, document_type: type[Struct], build: Callable[[Header], Document]
) -> Reply:
    """One chunk's request, asked again after a timeout or ``unavailable``, a bounded
    number of times."""
    attempts_left = limits.RESULT_CHUNK_REQUEST_ATTEMPTS_MAX
    while True:
        attempts_left -= 1
        try:
            return await request(document_type, build)
        except (RequestTimeout, ExchangeError) as exc:
            retryable = isinstance(exc, RequestTimeout) or exc.code == ErrorCode.UNAVAILABLE
            if not retryable or attempts_left == 0:
                raise
            log.info("%s not answered (%s); asking again", endpoint_of(document_type), exc)
