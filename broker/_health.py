"""Ask nats-server's monitor endpoint whether the server is healthy.

A plain HTTP/1.1 GET over an asyncio stream is all ``/healthz`` needs; an
HTTP client library would be a dependency for one request line.
"""

from __future__ import annotations

import asyncio
import json

from broker.limits import HEALTH_RESPONSE_BYTES_MAX, MONITOR_RESPONSE_BYTES_MAX

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


async def fetch_json(host: str, port: int, path: str, *, timeout_s: float) -> object | None:
    """The JSON a monitor endpoint (``/jsz``, ``/routez``) answers, or None on any failure.

    HTTP/1.0, so that the server sends the body as is (never chunked) and
    closes; the body is read up to MONITOR_RESPONSE_BYTES_MAX.
    """
    try:
        async with asyncio.timeout(timeout_s):
            reader, writer = await asyncio.open_connection(host, port)
            try:
                host_header = f"[{host}]" if ":" in host else host
                request = f"GET {path} HTTP/1.0\r\nHost: {host_header}:{port}\r\n\r\n"
                writer.write(request.encode("ascii"))
                await writer.drain()
                response = await _read_to_end(reader)
            finally:
                writer.close()
                await writer.wait_closed()
        head, _, body = response.partition(b"\r\n\r\n")
        if _parse_status_code(head.split(b"\r\n", 1)[0]) != _HTTP_OK:
            return None
        decoded: object = json.loads(body)
    except (OSError, TimeoutError, ValueError):
        return None
    return decoded


async def _read_to_end(reader: asyncio.StreamReader) -> bytes:
    """Everything until the server closes; ValueError past MONITOR_RESPONSE_BYTES_MAX."""
    chunks: list[bytes] = []
    size_bytes = 0
    while chunk := await reader.read(MONITOR_RESPONSE_BYTES_MAX):
        size_bytes += len(chunk)
        if size_bytes > MONITOR_RESPONSE_BYTES_MAX:
            raise ValueError(f"a monitor response above {MONITOR_RESPONSE_BYTES_MAX} bytes")
        chunks.append(chunk)
    return b"".join(chunks)
