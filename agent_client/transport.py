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
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import nats
import nats.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from agent_client import subjects
from agent_client.errors import AgentClientError, RequestTimeout, exchange_error
from agent_client.keys import AgentKeys
from agent_client.protocol import ErrorCode

__all__ = [
    "BoundedDispatcher",
    "IncomingMessage",
    "NatsConnection",
    "connect_nats",
    "flush_subscriptions",
]

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_DEFAULT_S = 5.0
DRAIN_TIMEOUT_S = 5.0
# The server refuses a client that has not authenticated within its own auth
# timeout; a first connection that has not succeeded by then is reported.
RECONNECT_WAIT_S = 2.0
_AUTHORIZATION_VIOLATION = "Authorization Violation"


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

    def __init__(self, handler: MessageHandler, *, concurrency_max: int) -> None:
        assert concurrency_max > 0
        self._handler = handler
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


async def connect_nats(
    url: str,
    keys: AgentKeys,
    /,
    *,
    name: str,
    connect_timeout_s: float = CONNECT_TIMEOUT_DEFAULT_S,
    reconnected: Callable[[], Awaitable[None]] | None = None,
) -> Client:
    """Connect as ``keys``: the server's nonce is signed with the agent key (nkey).

    Exchange workers and portal processes connect this way too, each with its
    own key; the server's auth callout grants each key its permissions, and
    every reply inbox lives under the key's own prefix (``_INBOX.<id>``), the
    only one it may receive on. ``url`` may list several servers, separated
    by commas. ``reconnected`` runs after each reconnect (subscriptions are
    back by then; what was published to them meanwhile is not). The first
    connection must succeed within
    ``connect_timeout_s``, or this raises AgentClientError saying why (the
    server refused the key, nothing listens, ...); after that the client
    reconnects for as long as it lives. Connection errors are logged one
    line each, never as tracebacks.
    """
    servers = [server.strip() for server in url.split(",") if server.strip()]
    errors: list[BaseException] = []
    refused = asyncio.Event()

    async def on_error(error: Exception) -> None:
        errors.append(error)
        del errors[:-1]
        if _AUTHORIZATION_VIOLATION in str(error):
            refused.set()
        log.warning("NATS connection of %s: %s", keys.agent_id, error or type(error).__name__)

    connecting = asyncio.ensure_future(
        nats.connect(
            servers,
            name=name,
            nkeys_seed_str=keys.seed_text().decode(),
            inbox_prefix=subjects.inbox_prefix(keys.agent_id),
            connect_timeout=connect_timeout_s,
            reconnect_time_wait=RECONNECT_WAIT_S,
            max_reconnect_attempts=-1,
            allow_reconnect=True,
            error_cb=on_error,
            **({} if reconnected is None else {"reconnected_cb": reconnected}),
        )
    )
    refusal = asyncio.ensure_future(refused.wait())
    try:
        await asyncio.wait(
            {connecting, refusal}, timeout=connect_timeout_s, return_when=asyncio.FIRST_COMPLETED
        )
    finally:
        refusal.cancel()
    if connecting.done() and connecting.exception() is None:
        client = connecting.result()
        _yield_between_reads(client)
        return client
    # A refusal of this key is final: asking again gets the same answer.
    connecting.cancel()
    with contextlib.suppress(BaseException):
        await connecting
    if refused.is_set():
        raise AgentClientError(
            f"NATS at {url} refused key {keys.agent_id}: Authorization Violation"
        )
    failure = errors[-1] if errors else connecting.exception() if connecting.done() else None
    reason = repr(failure) if failure else f"no connection within {connect_timeout_s} s"
    raise AgentClientError(f"cannot connect to NATS at {url}: {reason}")


def _yield_between_reads(client: Client, /) -> None:
    """Return to the event loop after each chunk nats-py reads from the socket.

    nats-py's read loop parses whatever the socket holds, chunk after chunk,
    without suspending while data keeps coming: a flood of small messages is
    all parsed before one callback runs, so the worker cannot see (and
    refuse, and have disconnected) the agent sending it until it has read
    the whole flood, while every other request waits. Yielding after each
    32 KiB chunk lets the callbacks keep pace. This wraps a private part of
    nats-py (its parser's ``parse``), hence the pinned version range.
    """
    parser = client._ps
    parse = parser.parse

    async def parse_then_yield(data: bytes = b"") -> None:
        await parse(data)
        await asyncio.sleep(0)

    parser.parse = parse_then_yield  # type: ignore[method-assign]


class NatsConnection:
    """One NATS connection with typed errors and explicit timeouts."""

    def __init__(self, client: Client, /) -> None:
        self._client = client
        self._dispatchers: list[BoundedDispatcher] = []
        self._reconnect_listeners: list[Callable[[], Coroutine[Any, Any, None]]] = []
        self._listener_tasks: set[asyncio.Task[None]] = set()

    def when_reconnected(self, listener: Callable[[], Coroutine[Any, Any, None]], /) -> None:
        """Run ``listener`` after each reconnect (connections made by :meth:`connect`)."""
        self._reconnect_listeners.append(listener)

    async def _reconnected(self) -> None:
        for listener in list(self._reconnect_listeners):
            # nats-py awaits this callback in its reconnect path: do not hold it up.
            task = asyncio.create_task(listener())
            self._listener_tasks.add(task)
            task.add_done_callback(self._listener_tasks.discard)

    @classmethod
    async def connect(
        cls,
        url: str,
        keys: AgentKeys,
        /,
        *,
        name: str,
        connect_timeout_s: float = CONNECT_TIMEOUT_DEFAULT_S,
    ) -> NatsConnection:
        connection: NatsConnection | None = None

        async def reconnected() -> None:
            if connection is not None:  # (a reconnect before connect returned)
                await connection._reconnected()

        connection = cls(
            await connect_nats(
                url, keys, name=name, connect_timeout_s=connect_timeout_s, reconnected=reconnected
            )
        )
        return connection

    @property
    def max_payload_bytes(self) -> int:
        return int(self._client.max_payload)

    def new_inbox(self) -> str:
        return str(self._client.new_inbox())

    async def request(self, subject: str, payload: bytes, /, *, timeout_s: float) -> bytes:
        try:
            msg = await self._client.request(subject, payload, timeout=timeout_s)
        except nats.errors.NoRespondersError as exc:
            # Nobody listens now (no worker is up, or the peer left): transient.
            raise exchange_error(ErrorCode.UNAVAILABLE, f"nobody serves {subject}") from exc
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
        """Run ``handler`` for each message, at most ``concurrency_max`` at once."""
        dispatcher = BoundedDispatcher(handler, concurrency_max=concurrency_max)
        self._dispatchers.append(dispatcher)
        try:
            subscription = await self._client.subscribe(
                subject, queue=queue, cb=dispatcher.dispatch
            )
        except nats.errors.Error as exc:
            raise AgentClientError(f"cannot subscribe to {subject}: {exc!r}") from exc
        await flush_subscriptions(self._client)
        return subscription

    async def subscribe_inbox(self, subject: str, /) -> Subscription:
        """A plain subscription read with ``next_msg`` (for collecting replies)."""
        return await self._client.subscribe(subject)

    async def close(self) -> None:
        """Drain: stop taking messages, finish the handlers running, close."""
        if self._client.is_closed:
            return
        # A connection the server already cut (an eviction, a lost server)
        # fails to drain or flush on the way out; closing is still done.
        with contextlib.suppress(nats.errors.Error, TimeoutError, OSError):
            await asyncio.wait_for(self._client.drain(), timeout=DRAIN_TIMEOUT_S)
        for dispatcher in self._dispatchers:
            await dispatcher.wait_idle()
        if not self._client.is_closed:
            with contextlib.suppress(nats.errors.Error, OSError):
                await self._client.close()
