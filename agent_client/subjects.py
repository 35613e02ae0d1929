"""The NATS subject namespace of protocol version 1.

Every subject lives under one versioned root. Requests to the exchange carry
the signer's agent id as a token, so that connection permissions can grant
each agent only its own request subjects and the exchange can check that the
token equals the signer.
"""

from __future__ import annotations

from typing import Final

from agent_client.protocol import EXCHANGE_REQUEST_TYPES, endpoint_of

__all__ = [
    "EXCHANGE_ENDPOINTS",
    "EXCHANGE_INFO",
    "EXCHANGE_QUEUE_GROUP",
    "GOODS_CHUNKS",
    "PORTAL_AUDIENCE",
    "PORTAL_CASH_OUT_SUBJECT_FORMAT",
    "PORTAL_LINK_SUBJECT_FORMAT",
    "RESULT_CHUNKS",
    "ROOT",
    "agent_id_in_request_subject",
    "exchange_request",
    "exchange_request_wildcard",
    "exchange_requests_of",
    "goods",
    "goods_chunk",
    "inbox_prefix",
    "metered",
    "metered_offers",
    "negotiation",
    "notice_deliver_subject",
    "notice_queue_group",
    "notifications",
    "portal_requests_of",
    "result_chunk",
    "rfq",
    "subscription",
]

ROOT: Final = "agentx.v2"
EXCHANGE_QUEUE_GROUP: Final = "agentx-exchange"
EXCHANGE_INFO: Final = f"{ROOT}.exchange.info"
# Every stored result chunk (see result_chunk).
RESULT_CHUNKS: Final = f"{ROOT}.results.*.*"
# Digital goods' ciphertext, one chunk per subject (only the exchange publishes).
GOODS_CHUNKS: Final = f"{ROOT}.goods_store.*.*"

# The exchange's endpoint names: the tags of its request documents.
EXCHANGE_ENDPOINTS: Final = tuple(endpoint_of(document) for document in EXCHANGE_REQUEST_TYPES)

_REQUEST_PREFIX: Final = f"{ROOT}.x."


PORTAL_AUDIENCE: Final = "portal"
# The human portal answers these, one subject per agent (request/reply).
PORTAL_LINK_SUBJECT_FORMAT: Final = ROOT + ".portal.{agent_id}.link"
PORTAL_CASH_OUT_SUBJECT_FORMAT: Final = ROOT + ".portal.{agent_id}.cash_out"


def exchange_request(agent_id: str, endpoint: str, /) -> str:
    assert endpoint in EXCHANGE_ENDPOINTS, endpoint
    return f"{_REQUEST_PREFIX}{agent_id}.{endpoint}"


def exchange_request_wildcard(endpoint: str, /) -> str:
    """Every agent's requests to ``endpoint`` (``>``: to every endpoint)."""
    assert endpoint in EXCHANGE_ENDPOINTS or endpoint == ">", endpoint
    return f"{_REQUEST_PREFIX}*.{endpoint}"


def exchange_requests_of(agent_id: str, /) -> str:
    """Every request subject of one agent: what its connection may publish."""
    return f"{_REQUEST_PREFIX}{agent_id}.>"


def portal_requests_of(agent_id: str, /) -> str:
    """Every portal request subject of one agent (``*``: of every agent)."""
    return f"{ROOT}.portal.{agent_id}.>"


def agent_id_in_request_subject(subject: str, /) -> str | None:
    """The agent id token of an exchange request subject, if it is one."""
    if not subject.startswith(_REQUEST_PREFIX):
        return None
    token, _, _ = subject[len(_REQUEST_PREFIX) :].partition(".")
    return token or None


def rfq(capability: str, /) -> str:
    return f"{ROOT}.rfq.{capability}"


def notifications(agent_id: str, /) -> str:
    return f"{ROOT}.agent.{agent_id}.notify"


def negotiation(agent_id: str, /) -> str:
    """Where a provider takes counter-offers (requests) and walk-aways (publishes)."""
    return f"{ROOT}.agent.{agent_id}.negotiate"


def metered(contract_id: str, /) -> str:
    """The subject a metered session's usage receipts are signed for (never published)."""
    return f"{ROOT}.metered.{contract_id}"


def metered_offers(capability: str, /) -> str:
    """The subject a provider's metered offers for a capability are signed for."""
    return f"{ROOT}.metered_offer.{capability}"


def subscription(subscription_id: str, /) -> str:
    """The subject a subscription's tokens are signed for (never published)."""
    return f"{ROOT}.subscription.{subscription_id}"


def goods(item_id: str, /) -> str:
    """The subject an item's licences are signed for (never published)."""
    return f"{ROOT}.goods.{item_id}"


def inbox_prefix(agent_id: str, /) -> str:
    """Each agent's reply inboxes live under its own prefix."""
    return f"_INBOX.{agent_id}"


def notice_deliver_subject(agent_id: str, /) -> str:
    """Where the exchange sends an agent's notices: inside its own inbox prefix,
    so that only its own connections can receive them."""
    return f"{inbox_prefix(agent_id)}.notices"


def notice_queue_group(agent_id: str, /) -> str:
    """The queue group an agent's processes share its notices in (each notice
    reaches one of them)."""
    return f"notices_{agent_id}"


def result_chunk(contract_id: str, index: int, /) -> str:
    """Where chunk ``index`` of a contract's large result is stored (only the exchange
    publishes or reads there)."""
    return f"{ROOT}.results.{contract_id}.{index}"


def goods_chunk(storage_key: str, index: int, /) -> str:
    """The subject of one chunk of a digital good's version, in the goods stream."""
    return f"{ROOT}.goods_store.{storage_key}.{index}"
