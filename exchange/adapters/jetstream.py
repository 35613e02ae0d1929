"""JetStream adapters of the exchange: notices out, result chunks in and out, consumers.

The use cases see ports (exchange/use_cases/exchange_context.py,
exchange/use_cases/notices.py); these implement them on the worker's own
connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import msgspec
import nats.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js import JetStreamContext
from nats.js.api import PubAck, RawStreamMsg
from nats.js.errors import NotFoundError

from agent_client import subjects
from agent_client.signing import sha256_hex
from broker.streams import NOTICE_STREAM, RESULT_STREAM, ensure_notice_consumer
from exchange.errors import ErrorCode, ExchangeError

__all__ = [
    "JetStreamNoticeConsumers",
    "JetStreamNoticePublisher",
    "JetStreamResultStore",
    "NoticeToPublish",
]

log = logging.getLogger(__name__)

NOTICE_PUBLISH_TIMEOUT_S = 5.0
# One chunk stored (JetStream's acknowledgement) or read back.
RESULT_STORE_TIMEOUT_S = 5.0


class NoticeToPublish(Protocol):
    """A sealed notice, as the outbox keeps it."""

    @property
    def notice_id(self) -> str: ...

    @property
    def subject(self) -> str: ...

    @property
    def payload(self) -> bytes: ...


class _PublishAck(msgspec.Struct):
    """What JetStream answers a publish with (only the fields looked at)."""

    stream: str = ""
    error: dict[str, object] | None = None


_publish_ack_decoder = msgspec.json.Decoder(_PublishAck)


@dataclass(slots=True, eq=False)
class _Batch:
    """One call's notices waiting for JetStream: why each is not stored yet, or None."""

    failures: list[BaseException | None]
    unanswered: int
    all_answered: asyncio.Future[None]


class JetStreamNoticePublisher:
    """Publishes notices into the notice stream, a batch at a time; the notice id
    deduplicates retries.

    Each notice is a plain publish whose reply subject, inside the worker's
    own inbox, carries a number; JetStream answers each there, one
    subscription takes the answers, and the batch waits once, until the
    last answer or the timeout. Through ``js.publish`` each notice was a
    request of its own, awaited in a task of its own: a task, a future, a
    timer, a random token and a JSON parse per notice (docs/PERFORMANCE.md,
    "Fifth pass").
    """

    def __init__(
        self,
        client: Client,
        /,
        *,
        inbox_prefix: str,
        timeout_s: float = NOTICE_PUBLISH_TIMEOUT_S,
    ) -> None:
        self._client = client
        self._timeout_s = timeout_s
        self._reply_prefix = f"{inbox_prefix}.notice_acks."
        self._numbers = itertools.count()
        # Reply number -> the batch and the notice's place in it.
        self._waiting: dict[str, tuple[_Batch, int]] = {}
        self._subscription: Subscription | None = None

    async def start(self) -> None:
        """Listen for JetStream's answers (before the first publish; the connection's
        drain ends it)."""
        self._subscription = await self._client.subscribe(
            f"{self._reply_prefix}*", cb=self._on_answer
        )

    async def publish_notices(
        self, notices: Sequence[NoticeToPublish], /
    ) -> list[BaseException | None]:
        """Publish ``notices``; for each, None once JetStream stored it, else why not
        (not sent, refused, no answer within the timeout)."""
        assert self._subscription is not None, "start() first"
        if not notices:
            return []
        unanswered = TimeoutError("JetStream did not acknowledge the notice in time")
        batch = _Batch(
            [unanswered] * len(notices), len(notices), asyncio.get_running_loop().create_future()
        )
        numbers: list[str] = []
        try:
            for index, notice in enumerate(notices):
                number = str(next(self._numbers))
                numbers.append(number)
                self._waiting[number] = (batch, index)
                try:
                    await self._client.publish(
                        notice.subject,
                        notice.payload,
                        reply=self._reply_prefix + number,
                        headers={"Nats-Msg-Id": notice.notice_id},
                    )
                except (nats.errors.Error, OSError) as exc:
                    self._answer(number, exc)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._timeout_s):
                    await batch.all_answered
        finally:
            for number in numbers:
                self._waiting.pop(number, None)
        return batch.failures

    async def _on_answer(self, message: Msg) -> None:
        number = message.subject.rpartition(".")[2]
        try:
            acknowledged = _publish_ack_decoder.decode(message.data)
        except (msgspec.DecodeError, RecursionError):
            # An empty answer with a status header: no stream took the subject.
            # (msgspec stops nesting deeper than its limit with RecursionError.)
            self._answer(number, ConnectionError(f"no acknowledgement: {message.headers}"))
            return
        if acknowledged.error is not None or acknowledged.stream != NOTICE_STREAM:
            self._answer(number, ConnectionError(f"refused: {acknowledged.error}"))
            return
        self._answer(number, None)

    def _answer(self, number: str, failure: BaseException | None) -> None:
        waiting = self._waiting.pop(number, None)
        if waiting is None:
            return  # too late: the batch stopped waiting, the relay publishes it again
        batch, index = waiting
        batch.failures[index] = failure
        batch.unanswered -= 1
        if batch.unanswered == 0 and not batch.all_answered.done():
            batch.all_answered.set_result(None)


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


class JetStreamNoticeConsumers:
    """Creates agents' notice consumers: agents have no JetStream permission themselves."""

    def __init__(self, js: JetStreamContext, /) -> None:
        self._js = js

    async def ensure_consumer(self, agent_id: str, /) -> None:
        try:
            await ensure_notice_consumer(self._js, agent_id)
        except (nats.errors.Error, TimeoutError) as exc:
            log.warning("could not set up the notice consumer of %s: %s", agent_id, exc)
            raise ExchangeError(ErrorCode.UNAVAILABLE, "notices are unavailable, retry") from exc
