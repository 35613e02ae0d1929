"""End-to-end sealed results: only the buyer can open them, not the exchange.

A provider seals the result to the buyer's agent id: the ed25519 public key
is converted to its X25519 form and the bytes go into a libsodium sealed box
(anonymous sender). The buyer opens it with its own key. The exchange only
sees, stores and hashes the ciphertext.
"""

from __future__ import annotations

import nacl.exceptions
import nacl.public

from agent_client.errors import ProtocolError
from agent_client.keys import AgentKeys, verify_key_for

__all__ = ["open_sealed", "seal_to"]


def seal_to(agent_id: str, plaintext: bytes, /) -> bytes:
    verify_key = verify_key_for(agent_id)
    if verify_key is None:
        raise ProtocolError("invalid_request", "cannot seal to something that is not an agent id")
    recipient = nacl.public.PublicKey(bytes(verify_key.to_curve25519_public_key()))
    return bytes(nacl.public.SealedBox(recipient).encrypt(plaintext))


def open_sealed(keys: AgentKeys, ciphertext: bytes, /) -> bytes:
    try:
        return bytes(nacl.public.SealedBox(keys.box_private_key()).decrypt(ciphertext))
    except nacl.exceptions.CryptoError as exc:
        raise ProtocolError(
            "bad_signature", "the sealed result does not open with our key"
        ) from exc
