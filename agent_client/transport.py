"""A small adapter over nats-py, so that ``nats.aio.msg.Msg`` never leaks out.

It adds what the protocol needs and nats-py leaves to the caller: explicit
timeouts on every request, typed errors instead of nats exceptions, and
handlers that run concurrently up to a bound (nats-py runs one
subscription's callbacks one at a time, so a slow handler would otherwise
stall every message behind it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import nats
import nats.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js.api import ConsumerConfig

from agent_client.errors import AgentClientError, ExchangeError, RequestTimeout
from agent_client.protocol import ErrorCode

__all__ = ["BoundedDispatcher", "IncomingMessage", "NatsConnection", "flush_subscriptions"]

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_DEFAULT_S = 5.0
DURABLE_ACK_WAIT_S = 30.0
OBJECT_TIMEOUT_S = 30.0
# A durable consumer nobody used for this long is removed by the server.
DURABLE_INACTIVE_THRESHOLD_S = 8 * 24 * 3600.0
DRAIN_TIMEOUT_S = 5.0


@dataclass(frozen=True, slots=True)
class IncomingMessage:
    subject: str
    data: bytes
    reply: str


MessageHandler = Callable[[IncomingMessage], Awaitable[None]]


class BoundedDispatcher:
    """Runs message handlers as tasks, at most ``concurrency_max`` at once.

    The subscription callback waits for a free slot before it returns, which
    pushes back on the subscription's own bounded pending queue instead of
    piling up tasks without limit.
    """

    def __init__(
        self, handler: MessageHandler, *, concurrency_max: int, acknowledge: bool = False
    ) -> None:
        assert concurrency_max > 0
        self._handler = handler
        # JetStream messages are acknowledged once handled (even if the handler
        # failed: a message that breaks the handler would break it again).
        self._acknowledge = acknowledge
        self._slots = asyncio.Semaphore(concurrency_max)
        self._tasks: set[asyncio.Task[None]] = set()

    async def dispatch(self, msg: Msg) -> None:
        await self._slots.acquire()
        task = asyncio.create_task(self._run(msg))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, msg: Msg) -> None:
        try:
            await self._handler(IncomingMessage(msg.subject, msg.data, msg.reply))
        except Exception:
            # A handler bug must not kill the subscription; it is logged with
            # its traceback and the message is dropped (the requester times out).
            log.exception("handler failed for a message on %s", msg.subject)
        finally:
            self._slots.release()
        if self._acknowledge:
            with contextlib.suppress(nats.errors.Error):
                await msg.ack()

    async def wait_idle(self) -> None:
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)


async def flush_subscriptions(client: Client, /, *, timeout_s: int = 5) -> None:
    """Return only once the server has every subscription made so far.

    nats-py 2.16 writes flush's PING straight to the socket, possibly ahead
    of a SUB still in its write buffer, so one flush can return before the
    server knows the subscription and a message sent meanwhile is lost. By
    the time the first PONG is back the buffered SUB has gone out, so a
    second flush closes the gap.
    """
    try:
        await client.flush(timeout=timeout_s)
        await client.flush(timeout=timeout_s)
    except (nats.errors.Error, TimeoutError) as exc:
        raise AgentClientError(f"the NATS server did not confirm a subscription: {exc!r}") from exc


class NatsConnection:
    """One NATS connection with typed errors and explicit timeouts."""

    def __init__(self, client: Client, /) -> None:
        self._client = client
        self._dispatchers: list[BoundedDispatcher] = []

    @classmethod
    async def connect(
        cls,
        url: str,
        /,
        *,
        name: str,
        inbox_prefix: str,
        connect_timeout_s: float = CONNECT_TIMEOUT_DEFAULT_S,
    ) -> NatsConnection:
        try:
            client = await nats.connect(
                url,
                name=name,
                inbox_prefix=inbox_prefix,
                connect_timeout=connect_timeout_s,
                max_reconnect_attempts=-1,
                allow_reconnect=True,
            )
        except (OSError, nats.errors.Error, TimeoutError) as exc:
            raise AgentClientError(f"cannot connect to NATS at {url}: {exc!r}") from exc
        return cls(client)

    @property
    def max_payload_bytes(self) -> int:
        return int(self._client.max_payload)

    def new_inbox(self) -> str:
        return str(self._client.new_inbox())

    async def request(self, subject: str, payload: bytes, /, *, timeout_s: float) -> bytes:
        try:
            msg = await self._client.request(subject, payload, timeout=timeout_s)
        except nats.errors.NoRespondersError as exc:
            raise ExchangeError(ErrorCode.UNAVAILABLE, f"nobody serves {subject}") from exc
        except (nats.errors.TimeoutError, TimeoutError) as exc:
            raise RequestTimeout(subject, timeout_s) from exc
        except nats.errors.Error as exc:
            raise AgentClientError(f"request on {subject} failed: {exc!r}") from exc
        return bytes(msg.data)

    async def publish(self, subject: str, payload: bytes, /, *, reply: str = "") -> None:
        try:
            await self._client.publish(subject, payload, reply=reply)
        except nats.errors.Error as exc:
            raise AgentClientError(f"publish on {subject} failed: {exc!r}") from exc

    async def subscribe(
        self,
        subject: str,
        handler: MessageHandler,
        /,
        *,
        concurrency_max: int,
        queue: str = "",
    ) -> Subscription:
        dispatcher = BoundedDispatcher(handler, concurrency_max=concurrency_max)
        self._dispatchers.append(dispatcher)
        subscription = await self._client.subscribe(subject, queue=queue, cb=dispatcher.dispatch)
        await flush_subscriptions(self._client)
        return subscription

    async def consume_durable(
        self,
        subject: str,
        handler: MessageHandler,
        /,
        *,
        durable_name: str,
        concurrency_max: int,
    ) -> None:
        """Receive a JetStream subject through a durable consumer, acking each message.

        What arrived while this agent was offline is delivered on connect. The
        durable name doubles as the deliver group, so two processes with the
        same identity share the messages instead of one failing to bind.
        """
        dispatcher = BoundedDispatcher(handler, concurrency_max=concurrency_max, acknowledge=True)
        self._dispatchers.append(dispatcher)
        js = self._client.jetstream(timeout=CONNECT_TIMEOUT_DEFAULT_S)
        try:
            await js.subscribe(
                subject,
                queue=durable_name,
                durable=durable_name,
                cb=dispatcher.dispatch,
                manual_ack=True,
                config=ConsumerConfig(
                    ack_wait=DURABLE_ACK_WAIT_S,
                    max_ack_pending=concurrency_max * 4,
                    inactive_threshold=DURABLE_INACTIVE_THRESHOLD_S,
                ),
            )
        except (nats.errors.Error, TimeoutError) as exc:
            raise AgentClientError(f"cannot consume {subject}: {exc!r}") from exc
        await flush_subscriptions(self._client)

    async def put_object(self, bucket: str, name: str, data: bytes, /) -> None:
        try:
            store = await self._client.jetstream(timeout=OBJECT_TIMEOUT_S).object_store(bucket)
            await store.put(name, data)
        except (nats.errors.Error, TimeoutError) as exc:
            raise AgentClientError(f"cannot store object {bucket}/{name}: {exc!r}") from exc

    async def get_object(self, bucket: str, name: str, /, *, size_max: int) -> bytes:
        try:
            store = await self._client.jetstream(timeout=OBJECT_TIMEOUT_S).object_store(bucket)
            info = await store.get_info(name)
            if info.size is None or info.size > size_max:
                raise AgentClientError(f"object {bucket}/{name} is over {size_max} B")
            result = await store.get(name)
        except (nats.errors.Error, TimeoutError) as exc:
            raise AgentClientError(f"cannot read object {bucket}/{name}: {exc!r}") from exc
        return bytes(result.data or b"")

    async def subscribe_inbox(self, subject: str, /) -> Subscription:
        """A plain subscription read with ``next_msg`` (for collecting replies)."""
        return await self._client.subscribe(subject)

    async def close(self) -> None:
        """Drain: stop taking messages, finish the handlers running, close."""
        if self._client.is_closed:
            return
        with contextlib.suppress(nats.errors.Error, TimeoutError):
            await asyncio.wait_for(self._client.drain(), timeout=DRAIN_TIMEOUT_S)
        for dispatcher in self._dispatchers:
            await dispatcher.wait_idle()
        if not self._client.is_closed:
            await self._client.close()
