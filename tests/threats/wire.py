"""Hand-made NATS connections for attacks the nats-py client would not make.

``forged_connect`` speaks the NATS client protocol over a bare socket: it
reads the server's INFO (and its nonce), sends a CONNECT with whatever
credentials the attacker chooses, and returns the server's answer line
(``PONG`` when accepted, ``-ERR ...`` when refused).
"""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any
from urllib.parse import urlsplit

ANSWER_TIMEOUT_S = 10.0
INFO_LINE_BYTES_MAX = 64 * 1024


async def server_nonce(url: str) -> str:
    """The nonce the server sends a new connection (then hangs up)."""
    reader, writer = await _open(url)
    try:
        return str((await _read_info(reader))["nonce"])
    finally:
        writer.close()


async def forged_connect(url: str, credentials: dict[str, Any]) -> tuple[str, str]:
    """Connect with ``credentials`` (a callable of the nonce may fill in ``sig``).

    Returns the nonce the server sent and its first answer to CONNECT + PING.
    """
    reader, writer = await _open(url)
    try:
        info = await _read_info(reader)
        nonce = str(info.get("nonce", ""))
        fields = {"verbose": False, "pedantic": False, "protocol": 1, "lang": "forger"}
        for name, value in credentials.items():
            fields[name] = value(nonce) if callable(value) else value
        writer.write(b"CONNECT " + json.dumps(fields).encode() + b"\r\nPING\r\n")
        await writer.drain()
        answer = await asyncio.wait_for(reader.readline(), ANSWER_TIMEOUT_S)
        return nonce, answer.decode().strip()
    finally:
        writer.close()


def signature_text(signature: bytes) -> str:
    return base64.b64encode(signature).decode()


async def _open(url: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    address = urlsplit(url)
    assert address.hostname is not None and address.port is not None
    return await asyncio.open_connection(address.hostname, address.port, limit=INFO_LINE_BYTES_MAX)


async def _read_info(reader: asyncio.StreamReader) -> dict[str, Any]:
    line = await asyncio.wait_for(reader.readline(), ANSWER_TIMEOUT_S)
    assert line.startswith(b"INFO "), line[:80]
    info: dict[str, Any] = json.loads(line[5:])
    return info


class Attacker:
    """A nats-py connection authenticated with an agent key of its own, recording
    the permission violations the server reports to it."""

    def __init__(self, keys: Any, client: Any, violations: list[str]) -> None:
        self.keys = keys
        self.client = client
        self.violations = violations

    @property
    def agent_id(self) -> str:
        return str(self.keys.agent_id)

    def violated(self, kind: str, subject: str) -> bool:
        """True once the server reported a violation of ``kind`` (publish or
        subscription) on exactly ``subject``."""
        # nats-py lower-cases the server's message.
        expected = f'permissions violation for {kind} to "{subject}"'.lower()
        return any(expected in violation.lower() for violation in self.violations)

    async def wait_for_violation(self, kind: str, subject: str) -> None:
        for _ in range(int(ANSWER_TIMEOUT_S / VIOLATION_POLL_S)):
            if self.violated(kind, subject):
                return
            await asyncio.sleep(VIOLATION_POLL_S)
        raise AssertionError(f"no {kind} violation on {subject}: {self.violations}")


VIOLATION_POLL_S = 0.02


async def connect_attacker(url: str, keys: Any) -> Attacker:
    import nats

    violations: list[str] = []

    async def record(error: Exception) -> None:
        violations.append(str(error))

    client = await nats.connect(
        url,
        nkeys_seed_str=keys.seed_text().decode(),
        inbox_prefix=f"_INBOX.{keys.agent_id}",
        error_cb=record,
        allow_reconnect=False,
        connect_timeout=5,
    )
    return Attacker(keys, client, violations)
