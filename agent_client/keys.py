"""Agent identities: ed25519 keypairs named by their NATS nkey public form.

An agent id is the 56-character nkey "user" public key (``U...``): base32 of
a prefix byte, the 32-byte ed25519 public key and a CRC-16. Seeds are kept in
nkey seed form (``SU...``) in files readable only by their owner, and are
never printed or logged.
"""

from __future__ import annotations

import base64
import os
import stat
from functools import lru_cache
from pathlib import Path

import nacl.exceptions
import nacl.public
import nacl.signing
import nkeys

from agent_client.errors import KeyFileError
from agent_client.limits import VERIFY_KEY_CACHE_ENTRIES_MAX

__all__ = ["AgentKeys", "is_agent_id", "verify_key_for"]

AGENT_ID_LENGTH = 56
SEED_FILE_MODE = 0o600
_SEED_LENGTH_MAX = 128


class AgentKeys:
    """A signing keypair. ``repr`` never shows the seed."""

    __slots__ = ("_signing_key", "agent_id")

    def __init__(self, signing_key: nacl.signing.SigningKey, /) -> None:
        self._signing_key = signing_key
        self.agent_id = _encode_agent_id(bytes(signing_key.verify_key))

    @classmethod
    def generate(cls) -> AgentKeys:
        return cls(nacl.signing.SigningKey.generate())

    @classmethod
    def from_seed(cls, seed: str | bytes, /) -> AgentKeys:
        """Build keys from nkey seed text (``SU...``)."""
        seed_bytes = seed.encode() if isinstance(seed, str) else bytes(seed)
        seed_bytes = seed_bytes.strip()
        if not seed_bytes or len(seed_bytes) > _SEED_LENGTH_MAX:
            raise KeyFileError("the seed is empty or too long")
        try:
            prefix, raw_seed = nkeys.decode_seed(seed_bytes)
        except (nkeys.NkeysError, ValueError) as exc:
            raise KeyFileError("the seed is not a valid nkey seed") from exc
        if prefix != nkeys.PREFIX_BYTE_USER or len(raw_seed) != 32:
            raise KeyFileError("the seed is not a user (agent) nkey seed")
        return cls(nacl.signing.SigningKey(bytes(raw_seed)))

    @classmethod
    def load(cls, path: str | Path, /) -> AgentKeys:
        """Read a seed file, refusing one that others can read."""
        seed_path = Path(path)
        try:
            mode = seed_path.stat().st_mode
            seed_text = seed_path.read_bytes()
        except OSError as exc:
            raise KeyFileError(f"cannot read seed file: {exc}", path=str(seed_path)) from exc
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise KeyFileError(
                f"seed file {seed_path} is readable by others; run chmod 600 on it",
                path=str(seed_path),
            )
        return cls.from_seed(seed_text)

    def save(self, path: str | Path, /) -> None:
        """Write the seed to a new file with mode 0600; never overwrite."""
        seed_path = Path(path)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
        try:
            descriptor = os.open(seed_path, flags, SEED_FILE_MODE)
        except FileExistsError as exc:
            raise KeyFileError(f"{seed_path} already exists", path=str(seed_path)) from exc
        except OSError as exc:
            raise KeyFileError(f"cannot create {seed_path}: {exc}", path=str(seed_path)) from exc
        with os.fdopen(descriptor, "wb") as seed_file:
            seed_file.write(self.seed_text() + b"\n")

    def seed_text(self) -> bytes:
        encoded: bytes = nkeys.encode_seed(bytes(self._signing_key), nkeys.PREFIX_BYTE_USER)
        return encoded

    def box_private_key(self) -> nacl.public.PrivateKey:
        """The X25519 form of this key, to open results sealed to this agent."""
        return nacl.public.PrivateKey(bytes(self._signing_key.to_curve25519_private_key()))

    def sign(self, data: bytes, /) -> bytes:
        signature: bytes = self._signing_key.sign(data).signature
        return signature

    def __repr__(self) -> str:
        return f"AgentKeys(agent_id={self.agent_id!r})"


def _encode_agent_id(public_key: bytes) -> str:
    body = bytes([nkeys.PREFIX_BYTE_USER]) + public_key
    checksum = nkeys.crc16(bytearray(body)).to_bytes(2, byteorder="little")
    return base64.b32encode(body + checksum).decode()


def _decode_agent_id(agent_id: str) -> bytes | None:
    if len(agent_id) != AGENT_ID_LENGTH or not agent_id.startswith("U"):
        return None
    try:
        raw = base64.b32decode(agent_id)
    except ValueError:
        return None
    body, checksum = raw[:-2], raw[-2:]
    if body[0] != nkeys.PREFIX_BYTE_USER:
        return None
    if nkeys.crc16(bytearray(body)).to_bytes(2, byteorder="little") != checksum:
        return None
    return body[1:]


def is_agent_id(text: str, /) -> bool:
    return _decode_agent_id(text) is not None


@lru_cache(maxsize=VERIFY_KEY_CACHE_ENTRIES_MAX)
def verify_key_for(agent_id: str, /) -> nacl.signing.VerifyKey | None:
    """The verify key named by an agent id, or None when the id is not one.

    Cached because decoding the id and building the key costs more than a
    dictionary look-up, and the same few agents sign most messages.
    """
    public_key = _decode_agent_id(agent_id)
    if public_key is None:
        return None
    try:
        return nacl.signing.VerifyKey(public_key)
    except nacl.exceptions.CryptoError:
        return None
