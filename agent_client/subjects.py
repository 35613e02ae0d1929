"""The NATS subject namespace of protocol version 1.

Every subject lives under one versioned root. Requests to the exchange carry
the signer's agent id as a token, so that connection permissions can grant
each agent only its own request subjects and the exchange can check that the
token equals the signer.
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "EXCHANGE_ENDPOINTS",
    "EXCHANGE_INFO",
    "EXCHANGE_QUEUE_GROUP",
    "PORTAL_AUDIENCE",
    "PORTAL_CASH_OUT_SUBJECT_FORMAT",
    "PORTAL_LINK_SUBJECT_FORMAT",
    "ROOT",
    "agent_id_in_request_subject",
    "exchange_request",
    "exchange_request_wildcard",
    "inbox_prefix",
    "negotiation",
    "notifications",
    "rfq",
]

ROOT: Final = "agentx.v1"
EXCHANGE_QUEUE_GROUP: Final = "agentx-exchange"
EXCHANGE_INFO: Final = f"{ROOT}.exchange.info"

EXCHANGE_ENDPOINTS: Final = (
    "catalog.advertise",
    "catalog.search",
    "catalog.status",
    "catalog.history",
    "catalog.reputation",
    "contract.open",
    "contract.deliver",
    "contract.accept",
    "contract.get",
    "contract.reject",
    "contract.cancel",
    "contract.evidence",
    "operator.resolve",
    "contract.rate",
    "wallet.balance",
    "wallet.transactions",
    "wallet.transfer",
    "operator.mint",
)

_REQUEST_PREFIX: Final = f"{ROOT}.x."


PORTAL_AUDIENCE: Final = "portal"
# The human portal answers these, one subject per agent (request/reply).
PORTAL_LINK_SUBJECT_FORMAT: Final = ROOT + ".portal.{agent_id}.link"
PORTAL_CASH_OUT_SUBJECT_FORMAT: Final = ROOT + ".portal.{agent_id}.cash_out"


def exchange_request(agent_id: str, endpoint: str, /) -> str:
    assert endpoint in EXCHANGE_ENDPOINTS, endpoint
    return f"{_REQUEST_PREFIX}{agent_id}.{endpoint}"


def exchange_request_wildcard(endpoint: str, /) -> str:
    assert endpoint in EXCHANGE_ENDPOINTS, endpoint
    return f"{_REQUEST_PREFIX}*.{endpoint}"


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


def inbox_prefix(agent_id: str, /) -> str:
    """Each agent's reply inboxes live under its own prefix."""
    return f"_INBOX.{agent_id}"
