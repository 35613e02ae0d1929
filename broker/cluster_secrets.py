"""The secrets every node of one NATS cluster shares, kept in a file when the
nodes run apart.

``agentx cluster`` starts all its nodes from one process and makes these
fresh for each run (broker/nats_cluster.py). Under Docker Compose each node
runs in a container of its own, so the nodes can only agree on them through
the shared data directory: a one-shot init step writes the file once, and
every node reads it from a read-only mount. Never in the image.

The file holds the route password (nodes prove to each other that they
belong) and the auth callout's three key seeds (every node trusts the same
issuer, so any node's callout may answer any node's request). It is JSON,
mode 0600, created exclusively so that two init steps cannot both write it.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

import msgspec
import nacl.signing
import nkeys

from broker.auth_callout import CalloutKeys
from broker.errors import NatsServerConfigInvalid
from broker.nats_jwt import NkeyPair

__all__ = ["ClusterSecrets"]

SECRETS_FILE_MODE = 0o600
# The file is a few hundred bytes; anything much larger is not ours.
SECRETS_FILE_BYTES_MAX = 4096
ROUTE_PASSWORD_BYTES = 16


class _SecretsFile(msgspec.Struct, frozen=True, kw_only=True):
    route_password: str
    issuer_seed: str
    service_user_seed: str
    system_user_seed: str


@dataclass(frozen=True, slots=True)
class ClusterSecrets:
    route_password: str = field(repr=False)
    callout_keys: CalloutKeys

    @classmethod
    def generate(cls) -> ClusterSecrets:
        return cls(secrets.token_hex(ROUTE_PASSWORD_BYTES), CalloutKeys.generate())

    @classmethod
    def load_or_create(cls, path: Path, /) -> ClusterSecrets:
        """The secrets in ``path``, writing fresh ones (0600) there on first use."""
        if not path.exists():
            fresh = cls.generate()
            fresh._save(path)
            return fresh
        return cls.load(path)

    @classmethod
    def load(cls, path: Path, /) -> ClusterSecrets:
        try:
            with path.open("rb") as secrets_file:
                content = secrets_file.read(SECRETS_FILE_BYTES_MAX + 1)
            if len(content) > SECRETS_FILE_BYTES_MAX:
                raise ValueError(f"larger than {SECRETS_FILE_BYTES_MAX} bytes")
            stored = msgspec.json.decode(content, type=_SecretsFile)
            keys = CalloutKeys(
                issuer=_pair(stored.issuer_seed, nkeys.PREFIX_BYTE_ACCOUNT),
                service_user=_pair(stored.service_user_seed, nkeys.PREFIX_BYTE_USER),
                system_user=_pair(stored.system_user_seed, nkeys.PREFIX_BYTE_USER),
            )
        except (OSError, ValueError, msgspec.DecodeError, nkeys.ErrInvalidSeed) as exc:
            raise NatsServerConfigInvalid(
                field_name="cluster_secrets", value=str(path), reason=f"unreadable: {exc}"
            ) from exc
        return cls(stored.route_password, keys)

    def _save(self, path: Path) -> None:
        keys = self.callout_keys
        stored = _SecretsFile(
            route_password=self.route_password,
            issuer_seed=keys.issuer.seed_text(prefix_byte=nkeys.PREFIX_BYTE_ACCOUNT),
            service_user_seed=keys.service_user.seed_text(prefix_byte=nkeys.PREFIX_BYTE_USER),
            system_user_seed=keys.system_user.seed_text(prefix_byte=nkeys.PREFIX_BYTE_USER),
        )
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, SECRETS_FILE_MODE)
        with os.fdopen(descriptor, "wb") as secrets_file:
            secrets_file.write(msgspec.json.encode(stored) + b"\n")


def _pair(seed_text: str, prefix_byte: int) -> NkeyPair:
    _, raw_seed = nkeys.decode_seed(seed_text.encode())
    return NkeyPair(nacl.signing.SigningKey(bytes(raw_seed)), prefix_byte=prefix_byte)
