"""Agent Cards of the A2A gateway: built from listings, signed, verified.

The gateway serves one card per capability on sale and an index card for
itself (docs/BRIDGES.md, section 3)::

    /.well-known/agent-card.json                      the gateway: every capability a skill
    /agents/<capability>/.well-known/agent-card.json  one capability (its JSON-RPC endpoint
                                                      is /agents/<capability>)

Each card carries one JWS signature (``AgentCardSignature``) made with the
SDK's signer (:func:`a2a.utils.signing.create_agent_card_signer`): EdDSA
(ed25519) over the card's RFC 8785 canonical JSON without its
``signatures``, as the A2A spec defines it. The protected header's ``kid``
is the signer's agent id, normally the exchange's own (``--card-key
DATA_DIR/exchange.seed``), so a client that pins the exchange id from
``exchange.json`` checks a card with :func:`verify_agent_card` and needs no
key server: the id *is* the public key.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any, cast

import nkeys
from a2a.types import (
    AgentCapabilities,
    AgentCard,
    AgentInterface,
    AgentProvider,
    AgentSkill,
)
from a2a.utils.constants import AGENT_CARD_WELL_KNOWN_PATH, TransportProtocol
from a2a.utils.signing import (
    ProtectedHeader,
    create_agent_card_signer,
    create_signature_verifier,
)
from jwt.api_jwk import PyJWK
from jwt.exceptions import InvalidKeyError
from jwt.utils import base64url_encode

from agent_client.keys import AgentKeys, verify_key_for
from agent_client.protocol import Listing

__all__ = [
    "CARD_SIGNATURE_ALGORITHM",
    "INPUT_MODES",
    "OUTPUT_MODES",
    "capability_card",
    "capability_card_path",
    "capability_url",
    "card_verifier",
    "index_card",
    "sign_card",
    "verify_agent_card",
]

# JWS "alg" for ed25519 keys (RFC 8037), the only one a card is checked with.
CARD_SIGNATURE_ALGORITHM = "EdDSA"
A2A_PROTOCOL_VERSION = "1.0"
INPUT_MODES = ("application/json", "text/plain")
OUTPUT_MODES = ("application/json", "text/plain")
# A skill shows at most this many examples taken from the input schema.
SKILL_EXAMPLES_MAX = 3
EXAMPLE_CHARS_MAX = 500
CARD_VERSION = "1.0.0"


def capability_url(base_url: str, capability: str, /) -> str:
    """The A2A agent URL of one capability: its JSON-RPC endpoint, its card below it."""
    return f"{base_url.rstrip('/')}/agents/{capability}"


def capability_card_path(capability: str, /) -> str:
    """The card's path on the gateway (what a resolver asks for)."""
    return f"/agents/{capability}{AGENT_CARD_WELL_KNOWN_PATH}"


def capability_card(listings: Sequence[Listing], /, *, base_url: str) -> AgentCard:
    """The (unsigned) card of one capability, described by its cheapest listing."""
    assert listings, "a capability card needs at least one listing"
    cheapest = min(listings, key=lambda listing: listing.price_millicredits)
    description = (
        f"{cheapest.description} Sold on Agent Exchange by {len(listings)} provider(s) "
        f"from {cheapest.price_millicredits} millicredits; the gateway hires the cheapest "
        "quote, escrow holds the price until the result is accepted."
    )
    return AgentCard(
        name=cheapest.capability,
        description=description,
        supported_interfaces=[_json_rpc_interface(capability_url(base_url, cheapest.capability))],
        provider=AgentProvider(organization="Agent Exchange", url=base_url),
        version=CARD_VERSION,
        capabilities=AgentCapabilities(streaming=True),
        default_input_modes=list(INPUT_MODES),
        default_output_modes=list(OUTPUT_MODES),
        skills=[_skill(cheapest, description)],
    )


def index_card(skills_from: Sequence[Listing], /, *, base_url: str) -> AgentCard:
    """The gateway's own (unsigned) card: every capability a skill, one listing each."""
    return AgentCard(
        name="Agent Exchange A2A gateway",
        description=(
            "Every active listing of the exchange as an A2A skill. Send a message to "
            "/agents/<skill id> (or here, naming the skill in the message metadata "
            '{"capability": ...}); the gateway buys it with escrow and returns the result.'
        ),
        supported_interfaces=[_json_rpc_interface(base_url.rstrip("/") + "/")],
        provider=AgentProvider(organization="Agent Exchange", url=base_url),
        version=CARD_VERSION,
        capabilities=AgentCapabilities(streaming=True),
        default_input_modes=list(INPUT_MODES),
        default_output_modes=list(OUTPUT_MODES),
        skills=[_skill(listing, listing.description) for listing in skills_from],
    )


def _json_rpc_interface(url: str) -> AgentInterface:
    return AgentInterface(
        url=url,
        protocol_binding=TransportProtocol.JSONRPC.value,
        protocol_version=A2A_PROTOCOL_VERSION,
    )


def _skill(listing: Listing, description: str) -> AgentSkill:
    return AgentSkill(
        id=listing.capability,
        name=listing.capability,
        description=description,
        tags=sorted({listing.capability, *listing.tags}),
        examples=_examples(listing.input_schema),
        input_modes=list(INPUT_MODES),
        output_modes=list(OUTPUT_MODES),
    )


def _examples(input_schema: dict[str, Any]) -> list[str]:
    """The schema's own ``examples`` (JSON Schema keyword), as JSON text, a few."""
    examples = input_schema.get("examples")
    if not isinstance(examples, list):
        return []
    texts = [json.dumps(example, sort_keys=True) for example in examples[:SKILL_EXAMPLES_MAX]]
    return [text for text in texts if len(text) <= EXAMPLE_CHARS_MAX]


# --- signatures ------------------------------------------------------------------


def sign_card(card: AgentCard, keys: AgentKeys, /) -> AgentCard:
    """Add the JWS signature of ``keys`` (``kid`` = its agent id) to ``card``; return it."""
    header = cast(
        ProtectedHeader,
        {"kid": keys.agent_id, "alg": CARD_SIGNATURE_ALGORITHM, "typ": "JOSE"},
    )
    return create_agent_card_signer(_private_key(keys), header)(card)


def _private_key(keys: AgentKeys) -> PyJWK:
    _, raw_seed = nkeys.decode_seed(keys.seed_text())
    public_key = _public_key_bytes(keys.agent_id)
    return _okp_key(public_key, {"d": base64url_encode(bytes(raw_seed)).decode()})


def _okp_key(public_key: bytes, private: dict[str, str]) -> PyJWK:
    """An ed25519 JWK (RFC 8037): ``x`` the public key, ``d`` the seed when private."""
    jwk = {"kty": "OKP", "crv": "Ed25519", "x": base64url_encode(public_key).decode(), **private}
    return PyJWK(jwk, CARD_SIGNATURE_ALGORITHM)


def card_verifier(exchange_id: str, /) -> Callable[[AgentCard], None]:
    """A ``signature_verifier`` for the SDK's resolver: only ``exchange_id`` may sign.

    The verifier raises :class:`a2a.utils.signing.SignatureVerificationError`
    (``NoSignatureError`` or ``InvalidSignaturesError``) unless one signature
    is a valid EdDSA signature by ``exchange_id`` over the card as it is.
    """
    public_key = _okp_key(_public_key_bytes(exchange_id), {})

    def key_for(kid: str | None, jku: str | None) -> PyJWK:
        # The key comes from the pinned id, never from the card: a signature
        # by any other key (or one naming a key URL) does not count.
        if kid != exchange_id or jku is not None:
            raise InvalidKeyError(f"the card is signed by {kid!r}, not the exchange")
        return public_key

    return create_signature_verifier(key_for, [CARD_SIGNATURE_ALGORITHM])


def verify_agent_card(card: AgentCard, exchange_id: str, /) -> None:
    """Raise ``SignatureVerificationError`` unless ``exchange_id`` signed ``card``."""
    card_verifier(exchange_id)(card)


def _public_key_bytes(agent_id: str) -> bytes:
    verify_key = verify_key_for(agent_id)
    if verify_key is None:
        raise ValueError(f"{agent_id!r} is not an agent id")
    return bytes(verify_key)
