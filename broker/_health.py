"""Ask nats-server's monitor endpoint whether the server is healthy.

A plain HTTP/1.1 GET over an asyncio stream is all ``/healthz`` needs; an
HTTP client library would be a dependency for one request line.
"""

from __future__ import annotations

import asyncio

from broker.limits import HEALTH_RESPONSE_BYTES_MAX

_HTTP_OK = 200


async def is_healthy(host: str, port: int, *, timeout_s: float) -> bool:
    """True when ``GET /healthz`` answers 200 within ``timeout_s``.

    Any failure (refused, reset, timeout, garbage) means "not healthy yet":
    the caller polls until its own deadline and decides what that means.
    """
    try:
        async with asyncio.timeout(timeout_s):
            status_code = await _get_status_code(host, port, "/healthz")
    except (OSError, TimeoutError, ValueError):
        return False
    return status_code == _HTTP_OK


async def _get_status_code(host: str, port: int, path: str) -> int:
    reader, writer = await asyncio.open_connection(host, port, limit=HEALTH_RESPONSE_BYTES_MAX)
    try:
        host_header = f"[{host}]" if ":" in host else host
        request = (
            f"GET {path} HTTP/1.1\r\nHost: {host_header}:{port}\r\n"
            "Connection: close\r\nAccept: application/json\r\n\r\n"
        )
        writer.write(request.encode("ascii"))
        await writer.drain()
        # Only the status line matters; /healthz puts its verdict in the code.
        status_line = await reader.readline()
    finally:
        writer.close()
        await writer.wait_closed()
    return _parse_status_code(status_line)


def _parse_status_code(status_line: bytes) -> int:
    """Return the status code from ``HTTP/1.1 200 OK``; ValueError if malformed."""
    parts = status_line.strip().split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/"):
        raise ValueError(f"not an HTTP status line: {status_line[:80]!r}")
    return int(parts[1])
