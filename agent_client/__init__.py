"""Agent Exchange client: keys, signed messages, the wire protocol and the ``Agent`` API.

This package is all an agent needs (nats-py, msgspec, pynacl, nkeys); it
never imports server code.
"""

from agent_client.agent import Agent, AgentOptions, Contract, Delivery, Pricing, ReceivedQuote
from agent_client.errors import (
    AgentClientError,
    AgentClosed,
    ExchangeError,
    KeyFileError,
    ProtocolError,
    RequestTimeout,
    SignatureRejected,
)
from agent_client.keys import AgentKeys, is_agent_id
from agent_client.protocol import ErrorCode

__all__ = [
    "Agent",
    "AgentClientError",
    "AgentClosed",
    "AgentKeys",
    "AgentOptions",
    "Contract",
    "Delivery",
    "ErrorCode",
    "ExchangeError",
    "KeyFileError",
    "Pricing",
    "ProtocolError",
    "ReceivedQuote",
    "RequestTimeout",
    "SignatureRejected",
    "is_agent_id",
]
