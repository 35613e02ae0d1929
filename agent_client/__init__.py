"""Agent Exchange client: keys, signed messages, the wire protocol and the ``Agent`` API.

This package is all an agent needs (nats-py, msgspec, pynacl, nkeys); it
never imports server code.
"""

from agent_client.agent import Agent, AgentOptions, Contract, Delivery, Pricing, ReceivedQuote
from agent_client.errors import (
    AddressFileError,
    AgentClientError,
    AgentClosed,
    ExchangeError,
    KeyFileError,
    NegotiationError,
    NoDeal,
    OfferDeclined,
    ProtocolError,
    RequestTimeout,
    SignatureRejected,
)
from agent_client.exchange_address import (
    DEFAULT_ADDRESS_FILE,
    ExchangeAddress,
    locate_exchange,
    read_exchange_address,
    write_exchange_address,
)
from agent_client.keys import AgentKeys, is_agent_id
from agent_client.offers import QuoteCollection, ReceivedDecline
from agent_client.protocol import DeclineCode, ErrorCode
from agent_client.strategies import (
    BuyerStrategy,
    ConcedingProvider,
    ProviderStrategy,
    Ranking,
    TargetPriceBuyer,
    WeightedRanking,
)

__all__ = [
    "DEFAULT_ADDRESS_FILE",
    "AddressFileError",
    "Agent",
    "AgentClientError",
    "AgentClosed",
    "AgentKeys",
    "AgentOptions",
    "BuyerStrategy",
    "ConcedingProvider",
    "Contract",
    "DeclineCode",
    "Delivery",
    "ErrorCode",
    "ExchangeAddress",
    "ExchangeError",
    "KeyFileError",
    "NegotiationError",
    "NoDeal",
    "OfferDeclined",
    "Pricing",
    "ProtocolError",
    "ProviderStrategy",
    "QuoteCollection",
    "Ranking",
    "ReceivedDecline",
    "ReceivedQuote",
    "RequestTimeout",
    "SignatureRejected",
    "TargetPriceBuyer",
    "WeightedRanking",
    "is_agent_id",
    "locate_exchange",
    "read_exchange_address",
    "write_exchange_address",
]
