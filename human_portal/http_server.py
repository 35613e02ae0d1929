"""Serving an ASGI app with uvicorn inside the caller's event loop, on a loopback port.

The stack runs the portal (and, offline, the Connect stand-in) in the same
process and loop as the exchange; this starts and stops one such server.
Uvicorn's own signal handling is turned off: the command that owns the
process (``agentx up``) handles Ctrl-C and stops everything in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Iterator
from typing import Any

import uvicorn

from agent_client.http_listeners import listening_socket

__all__ = ["EmbeddedHttpServer"]

START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 10.0
KEEP_ALIVE_TIMEOUT_S = 5
CONNECTIONS_MAX = 1000
LISTEN_BACKLOG = 256


class _QuietServer(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class EmbeddedHttpServer:
    """Bind first (to learn a free port's number), then serve an app on it."""

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self._host = host
        self._requested_port = port
        self._listener: socket.socket | None = None
        self._server: _QuietServer | None = None
        self._task: asyncio.Task[None] | None = None
        self.port = 0

    @property
    def url(self) -> str:
        assert self.port, "the server is not started"
        return f"http://{self._host}:{self.port}"

    def bind(self) -> None:
        assert self._listener is None, "already bound"
        self._listener = listener = listening_socket(
            self._host, self._requested_port, backlog=LISTEN_BACKLOG
        )
        self.port = int(listener.getsockname()[1])

    async def start(self, app: Any, /) -> None:
        assert self._server is None, "already started"
        if self._listener is None:
            self.bind()
        listener = self._listener
        assert listener is not None
        config = uvicorn.Config(
            app,
            log_level="warning",
            lifespan="off",
            access_log=False,
            timeout_keep_alive=KEEP_ALIVE_TIMEOUT_S,
            limit_concurrency=CONNECTIONS_MAX,
            timeout_graceful_shutdown=int(STOP_TIMEOUT_S),
        )
        self._server = _QuietServer(config)
        self._task = asyncio.create_task(self._server.serve(sockets=[listener]))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + START_TIMEOUT_S
        while not self._server.started:
            if self._task.done() or loop.time() > deadline:
                await self.stop()
                raise RuntimeError(f"the HTTP server on {self._host}:{self.port} did not start")
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        server, task, listener = self._server, self._task, self._listener
        self._server, self._task, self._listener = None, None, None
        if server is None or task is None:
            if listener is not None:
                listener.close()
            return
        server.should_exit = True
        try:
            await asyncio.wait_for(task, STOP_TIMEOUT_S)
        except TimeoutError:
            server.force_exit = True
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
