"""Results too large to send inline: uploaded to the exchange in chunks, read back by the buyer.

The rule: nobody but its buyer (and the exchange, and the operators who
settle disputes) can read a stored result, and nobody can replace or delete
it once delivered. So:

* only the contract's provider uploads (``contract.upload``), while the
  contract is open and before its delivery deadline; an upload replaces the
  chunk stored under its index, and once the contract is delivered every
  upload is refused (``invalid_state``), so the chunks the delivery was
  checked against stay the chunks the buyer reads;
* ``contract.deliver`` with a ``result_ref`` makes the exchange read the
  chunks back (:func:`read_stored_result`) and check the joined bytes as it
  checks an inline result (exchange/use_cases/contract_lifecycle.py);
* only the buyer or an operator reads a chunk (``contract.result``), and
  only of a delivered stored result; anyone else gets the answers every
  contract read gives (``not_found`` to a stranger, ``forbidden`` to the
  provider).

Agents cannot reach the store themselves (they have no JetStream
permission), and the stream refuses deletes and purges (broker/streams.py).

Every chunk but the last holds ``RESULT_CHUNK_BYTES_MAX`` bytes, so a
reference's chunk count, and each chunk's size, follow from its size
(:func:`chunk_bytes_at`).
"""

from __future__ import annotations

import binascii

from sqlalchemy.ext.asyncio import AsyncConnection

from agent_client import limits as protocol_limits
from agent_client.protocol import (
    ChunkStoredReply,
    GetResult,
    ResultChunkReply,
    ResultRef,
    UploadResult,
)
from agent_client.signing import b64decode, b64encode, sha256_hex
from exchange.adapters import contract_store
from exchange.domain.contract_states import ContractRow, ContractState, Role, check_party, due_event
from exchange.errors import ErrorCode, ExchangeError
from exchange.use_cases.contract_views import object_ref_from_text
from exchange.use_cases.exchange_context import ExchangeContext, ResultStore

__all__ = [
    "ResultUseCases",
    "check_result_layout",
    "chunk_bytes_at",
    "chunk_count_for",
    "read_stored_result",
]

_CHUNK_BYTES_MAX = protocol_limits.RESULT_CHUNK_BYTES_MAX


def chunk_count_for(size_bytes: int, /) -> int:
    """How many chunks a stored result of ``size_bytes`` bytes has."""
    assert 0 < size_bytes <= protocol_limits.RESULT_OBJECT_BYTES_MAX
    return -(-size_bytes // _CHUNK_BYTES_MAX)


def chunk_bytes_at(size_bytes: int, index: int, /) -> int:
    """How many bytes chunk ``index`` of a stored result of ``size_bytes`` bytes holds."""
    assert 0 <= index < chunk_count_for(size_bytes)
    return min(_CHUNK_BYTES_MAX, size_bytes - index * _CHUNK_BYTES_MAX)


def check_result_layout(size_bytes: int, chunk_count: int, /) -> None:
    """Refuse a chunk count that is not the one ``size_bytes`` gives."""
    expected = chunk_count_for(size_bytes)
    if chunk_count != expected:
        raise ExchangeError(
            ErrorCode.INVALID_REQUEST,
            f"a result of {size_bytes} B is stored as {expected} chunks "
            f"of at most {_CHUNK_BYTES_MAX} B, not {chunk_count}",
        )


async def read_stored_result(
    store: ResultStore, contract_id: str, reference: ResultRef, /
) -> bytes:
    """The stored result ``reference`` describes: its chunks, each checked, joined in order."""
    check_result_layout(reference.size_bytes, reference.chunk_count)
    assert reference.chunk_count <= protocol_limits.RESULT_CHUNKS_MAX
    chunks: list[bytes] = []
    for index in range(reference.chunk_count):
        chunk = await store.get_chunk(contract_id, index)
        expected_bytes = chunk_bytes_at(reference.size_bytes, index)
        if chunk is None:
            raise ExchangeError(
                ErrorCode.RESULT_INCOMPLETE,
                f"chunk {index} of {reference.chunk_count} is not stored: upload it, then deliver",
                contract_id=contract_id,
            )
        if len(chunk) != expected_bytes:
            raise ExchangeError(
                ErrorCode.RESULT_INCOMPLETE,
                f"chunk {index} holds {len(chunk)} B, but a result of {reference.size_bytes} B "
                f"has {expected_bytes} B there: upload it again",
                contract_id=contract_id,
            )
        chunks.append(chunk)
    result_bytes = b"".join(chunks)
    assert len(result_bytes) == reference.size_bytes
    return result_bytes


def _uploaded_chunk(request: UploadResult, /) -> bytes:
    """The raw bytes of an upload's chunk, checked against the layout it claims."""
    check_result_layout(request.size_bytes, request.chunk_count)
    if request.index >= request.chunk_count:
        raise ExchangeError(
            ErrorCode.INVALID_REQUEST,
            f"chunk {request.index} of a result of {request.chunk_count} chunks",
        )
    try:
        chunk = b64decode(request.chunk)
    except (binascii.Error, ValueError) as exc:
        raise ExchangeError(ErrorCode.INVALID_REQUEST, "the chunk is not base64url") from exc
    expected_bytes = chunk_bytes_at(request.size_bytes, request.index)
    if len(chunk) != expected_bytes:
        raise ExchangeError(
            ErrorCode.INVALID_REQUEST,
            f"chunk {request.index} of a result of {request.size_bytes} B "
            f"holds {expected_bytes} B, not {len(chunk)}",
        )
    return chunk


class ResultUseCases:
    """Uploading the chunks of a large result, and reading them back."""

    def __init__(self, context: ExchangeContext, /) -> None:
        self._context = context

    async def upload(self, provider_id: str, request: UploadResult, /) -> ChunkStoredReply:
        """Store one chunk of the provider's result before it delivers (replacing it)."""
        store = self._store()
        chunk = _uploaded_chunk(request)
        contract = await self._contract(request.contract_id)
        if check_party(contract, provider_id) is not Role.PROVIDER:
            raise ExchangeError(
                ErrorCode.FORBIDDEN,
                "only the provider uploads the result",
                contract_id=contract.contract_id,
            )
        if contract.state is not ContractState.OPEN:
            raise ExchangeError(
                ErrorCode.INVALID_STATE,
                f"a result is uploaded before it is delivered; this contract is "
                f"{contract.state.value}",
                contract_id=contract.contract_id,
            )
        if due_event(contract, now_ms=self._context.clock.now_ms()) is not None:
            raise ExchangeError(
                ErrorCode.INVALID_STATE,
                "the delivery deadline has passed",
                contract_id=contract.contract_id,
            )
        await store.put_chunk(contract.contract_id, request.index, chunk)
        return ChunkStoredReply(
            contract_id=contract.contract_id,
            index=request.index,
            chunk_sha256=sha256_hex(chunk),
        )

    async def read(self, agent_id: str, request: GetResult, /) -> ResultChunkReply:
        """One chunk of a delivered stored result, for its buyer or an operator."""
        store = self._store()
        contract = await self._contract(request.contract_id)
        is_operator = agent_id in self._context.operator_ids
        if not is_operator and check_party(contract, agent_id) is not Role.BUYER:
            raise ExchangeError(
                ErrorCode.FORBIDDEN,
                "only the buyer reads the stored result",
                contract_id=contract.contract_id,
            )
        reference = object_ref_from_text(contract.result_ref)
        if reference is None:
            raise ExchangeError(
                ErrorCode.NOT_FOUND,
                "this contract holds no stored result (not delivered yet, or delivered inline)",
                contract_id=contract.contract_id,
            )
        if request.index >= reference.chunk_count:
            raise ExchangeError(
                ErrorCode.INVALID_REQUEST,
                f"the stored result has {reference.chunk_count} chunks",
                contract_id=contract.contract_id,
            )
        chunk = await store.get_chunk(contract.contract_id, request.index)
        if chunk is None:
            raise ExchangeError(
                ErrorCode.NOT_FOUND,
                "the stored result is gone (results are kept as long as the contract record)",
                contract_id=contract.contract_id,
            )
        return ResultChunkReply(
            contract_id=contract.contract_id,
            index=request.index,
            chunk_count=reference.chunk_count,
            size_bytes=reference.size_bytes,
            chunk=b64encode(chunk),
        )

    def _store(self) -> ResultStore:
        if self._context.results is None:
            raise ExchangeError(ErrorCode.INVALID_REQUEST, "this worker takes inline results only")
        return self._context.results

    async def _contract(self, contract_id: str) -> ContractRow:
        async def work(connection: AsyncConnection) -> ContractRow | None:
            return await contract_store.get_contract(connection, contract_id)

        contract = await self._context.run(work)
        if contract is None:
            raise ExchangeError(ErrorCode.NOT_FOUND, "no such contract")
        return contract
