"""A tiny HTTP server for operators: ``/metrics`` (Prometheus) and ``/healthz``.

It runs on the process's own event loop (no thread, no web framework), so
``/healthz`` can await the same NATS connection and database the process
uses. It speaks just enough HTTP/1.1 for Prometheus and load balancers: a
``GET`` per connection, answered and closed. Everything is bounded: the
request head's size, the time to send it, the connections served at once,
and the time the health check may take.

Bind it to loopback (the default) unless a firewall stands in front: the
metrics name endpoints and counts, which are nobody else's business.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Final

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

__all__ = ["HealthCheck", "MetricsServer"]

log = logging.getLogger(__name__)

# The request line and headers together; Prometheus sends a few hundred bytes.
REQUEST_HEAD_BYTES_MAX: Final = 8 * 1024
REQUEST_HEAD_LINES_MAX: Final = 64
# A client slower than this to send its request is dropped.
REQUEST_HEAD_TIMEOUT_S: Final = 5.0
# Connections served at once; more are closed at once (scrapers retry).
CONNECTIONS_MAX: Final = 16
# The health check's own bound: a hung database answers 503, not never.
HEALTH_TIMEOUT_S: Final = 3.0
# How much of a failure's text the one-line 503 answer carries.
HEALTH_REASON_CHARS_MAX: Final = 200

# Returns None when healthy, else a one-line reason.
HealthCheck = Callable[[], Awaitable[str | None]]


class MetricsServer:
    """Serves ``registry`` at ``/metrics`` and ``health`` at ``/healthz`` on ``host:port``."""

    def __init__(
        self, registry: CollectorRegistry, /, *, health: HealthCheck, host: str, port: int
    ) -> None:
        assert 0 <= port <= 65535
        self._registry = registry
        self._health = health
        self._host = host
        self._port = port
        self._server: asyncio.Server | None = None
        self._connections = 0

    @property
    def url(self) -> str:
        """``http://host:port`` as bound (the real port when asked for port 0)."""
        assert self._server is not None, "the metrics server is not started"
        host, port = self._server.sockets[0].getsockname()[:2]
        return f"http://{host}:{port}"

    async def start(self) -> None:
        assert self._server is None, "the metrics server is already started"
        self._server = await asyncio.start_server(
            self._serve, self._host, self._port, limit=REQUEST_HEAD_BYTES_MAX
        )

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._connections >= CONNECTIONS_MAX:
            writer.close()
            return
        self._connections += 1
        try:
            path = await asyncio.wait_for(_read_path(reader), REQUEST_HEAD_TIMEOUT_S)
            status, content_type, body = await self._answer(path)
            writer.write(_response(status, content_type, body))
            await writer.drain()
        except (TimeoutError, ValueError, ConnectionError, asyncio.IncompleteReadError):
            pass  # a broken or slow client gets no answer; nothing to log
        finally:
            self._connections -= 1
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def _answer(self, path: str | None) -> tuple[str, str, bytes]:
        if path == "/metrics":
            return "200 OK", CONTENT_TYPE_LATEST, generate_latest(self._registry)
        if path == "/healthz":
            reason = await self._health_reason()
            if reason is None:
                return "200 OK", "text/plain; charset=utf-8", b"ok\n"
            return "503 Service Unavailable", "text/plain; charset=utf-8", f"{reason}\n".encode()
        if path is None:
            return "405 Method Not Allowed", "text/plain; charset=utf-8", b"GET only\n"
        return "404 Not Found", "text/plain; charset=utf-8", b"try /metrics or /healthz\n"

    async def _health_reason(self) -> str | None:
        try:
            reason = await asyncio.wait_for(self._health(), HEALTH_TIMEOUT_S)
        except TimeoutError:
            reason = f"the health check took over {HEALTH_TIMEOUT_S} s"
        except Exception as exc:
            # A failing check is the answer, not a crash of the server.
            reason = f"the health check failed: {type(exc).__name__}: {exc}"
        if reason is None:
            return None
        return reason.replace("\n", " ")[:HEALTH_REASON_CHARS_MAX]


async def _read_path(reader: asyncio.StreamReader) -> str | None:
    """The path a ``GET`` asks for (without its query), None for another method."""
    request_line = (await reader.readline()).decode("latin-1").split()
    for _ in range(REQUEST_HEAD_LINES_MAX):
        if (await reader.readline()) in (b"\r\n", b"\n", b""):
            break
    else:
        raise ValueError("too many header lines")
    if len(request_line) != 3 or request_line[0] != "GET":
        return None
    return request_line[1].split("?", 1)[0]


def _response(status: str, content_type: str, body: bytes) -> bytes:
    head = (
        f"HTTP/1.1 {status}\r\n"
        f"Content-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Cache-Control: no-store\r\n"
        "Connection: close\r\n\r\n"
    )
    return head.encode("latin-1") + body
