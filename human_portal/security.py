"""Secrets: password hashes (argon2id), random tokens and their digests (pure).

Session ids, CSRF tokens, link codes and API tokens are random; only their
SHA-256 digests are stored, so a copy of the database opens no session and
spends no token. Comparisons of secrets are constant-time.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass

import argon2
import argon2.exceptions

from human_portal import limits

__all__ = [
    "PasswordHasher",
    "PasswordProfile",
    "constant_time_equal",
    "new_link_code",
    "new_token",
    "normalized_link_code",
    "token_digest",
]

_BASE32_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
_LINK_CODE_GROUP = 5


@dataclass(frozen=True, slots=True)
class PasswordProfile:
    """Argon2id cost parameters; the defaults are RFC 9106's second profile."""

    time_cost: int = limits.ARGON2_TIME_COST
    memory_cost_kib: int = limits.ARGON2_MEMORY_COST_KIB
    parallelism: int = limits.ARGON2_PARALLELISM

    def __post_init__(self) -> None:
        assert 1 <= self.time_cost <= 10
        assert 8 * self.parallelism <= self.memory_cost_kib <= 4 * 1024 * 1024
        assert 1 <= self.parallelism <= 16


class PasswordHasher:
    """Hashes and verifies passwords; verification also says when to rehash."""

    def __init__(self, profile: PasswordProfile, /) -> None:
        self.profile = profile
        self._dummy_hash: str | None = None
        self._hasher = argon2.PasswordHasher(
            time_cost=profile.time_cost,
            memory_cost=profile.memory_cost_kib,
            parallelism=profile.parallelism,
            type=argon2.Type.ID,
        )

    def hash(self, password: str, /) -> str:
        return self._hasher.hash(password)

    def verify(self, password_hash: str, password: str, /) -> bool:
        try:
            return self._hasher.verify(password_hash, password)
        except (argon2.exceptions.VerificationError, argon2.exceptions.InvalidHashError):
            return False

    def needs_rehash(self, password_hash: str, /) -> bool:
        return self._hasher.check_needs_rehash(password_hash)

    def dummy_hash(self) -> str:
        """A hash of a random secret, to verify against when an account does not
        exist, so that an unknown email takes as long to refuse as a wrong password."""
        if self._dummy_hash is None:
            self._dummy_hash = self.hash(new_token(16))
        return self._dummy_hash


def new_token(byte_count: int, /) -> str:
    """A random URL-safe token of ``byte_count`` random bytes."""
    assert 16 <= byte_count <= 64
    return secrets.token_urlsafe(byte_count)


def token_digest(token: str, /, *, purpose: str) -> str:
    """The stored form of a secret token; ``purpose`` keeps kinds of tokens apart."""
    return hashlib.sha256(f"agentx.portal.{purpose}:{token}".encode()).hexdigest()


def constant_time_equal(left: str, right: str, /) -> bool:
    return hmac.compare_digest(left.encode(), right.encode())


def new_link_code() -> str:
    """A one-time link code shown to the human, e.g. ``K7QXM-2D4RA-PLW9Z``."""
    raw = base64.b32encode(secrets.token_bytes(10)).decode()[: limits.LINK_CODE_CHARACTERS]
    assert all(character in _BASE32_ALPHABET for character in raw)
    groups = [raw[i : i + _LINK_CODE_GROUP] for i in range(0, len(raw), _LINK_CODE_GROUP)]
    return "-".join(groups)


def normalized_link_code(code: str, /) -> str | None:
    """The code without separators and in upper case, or None when it cannot be one."""
    compact = code.strip().upper().replace("-", "").replace(" ", "")
    if len(compact) != limits.LINK_CODE_CHARACTERS:
        return None
    if any(character not in _BASE32_ALPHABET for character in compact):
        return None
    return compact
