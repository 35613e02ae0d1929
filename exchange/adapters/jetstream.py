"""JetStream adapter of the exchange: result and goods chunks in and out.

The use cases see a port (``ResultStore`` in exchange/use_cases/exchange_context.py);
this implements it on the worker's own connection.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import nats.errors
from nats.js import JetStreamContext
from nats.js.api import PubAck, RawStreamMsg
from nats.js.errors import NotFoundError

from agent_client import subjects
from agent_client.signing import sha256_hex
from broker.streams import RESULT_STREAM
from exchange.errors import ErrorCode, ExchangeError

__all__ = ["JetStreamResultStore"]

log = logging.getLogger(__name__)

# One chunk stored (JetStream's acknowledgement) or read back.
RESULT_STORE_TIMEOUT_S = 5.0


class JetStreamResultStore:
    """Keeps result chunks in the ``AGENTX_RESULTS`` stream, one subject per chunk.

    A chunk is published with a message id naming the chunk and its bytes, and
    only counts once JetStream acknowledged it; a retried upload within the
    stream's duplicate window is stored once. The window would also take the
    same bytes stored, replaced and stored again for a duplicate and drop
    them, so a duplicate is checked against what the stream holds, and sent
    again under an id of its own if it is not what the stream holds.
    """

    def __init__(
        self,
        js: JetStreamContext,
        /,
        *,
        timeout_s: float = RESULT_STORE_TIMEOUT_S,
        stream: str = RESULT_STREAM,
        subject_of: Callable[[str, int], str] = subjects.result_chunk,
    ) -> None:
        self._js = js
        self._timeout_s = timeout_s
        # The digital goods' store is the same kind, on a stream of its own.
        self._stream = stream
        self._subject_of = subject_of

    async def put_chunk(self, contract_id: str, index: int, chunk: bytes, /) -> None:
        subject = self._subject_of(contract_id, index)
        message_id = f"{contract_id}.{index}.{sha256_hex(chunk)}"
        try:
            acknowledgement = await self._publish(subject, chunk, message_id)
            if acknowledgement.duplicate:
                stored = await self._last(subject)
                if stored is None or stored.data != chunk:
                    replaced_sequence = acknowledgement.seq if stored is None else stored.seq
                    await self._publish(subject, chunk, f"{message_id}.{replaced_sequence}")
        except (nats.errors.Error, TimeoutError) as exc:
            log.warning("could not store chunk %d of %s: %s", index, contract_id, exc)
            raise ExchangeError(
                ErrorCode.UNAVAILABLE, "the result store did not take the chunk, retry later"
            ) from exc

    async def get_chunk(self, contract_id: str, index: int, /) -> bytes | None:
        try:
            stored = await self._last(self._subject_of(contract_id, index))
        except (nats.errors.Error, TimeoutError) as exc:
            log.warning("could not read chunk %d of %s: %s", index, contract_id, exc)
            raise ExchangeError(
                ErrorCode.UNAVAILABLE, "the result store is unavailable, retry later"
            ) from exc
        return None if stored is None else bytes(stored.data or b"")

    async def _publish(self, subject: str, chunk: bytes, message_id: str) -> PubAck:
        return await self._js.publish(
            subject,
            chunk,
            timeout=self._timeout_s,
            stream=self._stream,
            headers={"Nats-Msg-Id": message_id},
        )

    async def _last(self, subject: str) -> RawStreamMsg | None:
        try:
            return await self._js.get_last_msg(self._stream, subject)
        except NotFoundError:
            return None
