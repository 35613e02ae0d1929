"""Agent Exchange client: keys, signed messages, the wire protocol and the ``Agent`` API.

This package is all an agent needs (nats-py, msgspec, pynacl, nkeys); it
never imports server code. An agent connects as an :class:`Agent`, asks
for quotes with a :class:`QuoteRequest`, and holds each contract it hires
as a :class:`Contract`; an operator's agent sends its requests through an
:class:`OperatorClient`.
"""

from agent_client.agent import Agent, AgentOptions, Pricing, ReceivedQuote
from agent_client.contracts import Contract, Delivery
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
    RefusedError,
    RejectedError,
    RequestTimeout,
    RetryableError,
    SignatureRejected,
    TaskDeclined,
)
from agent_client.exchange_address import (
    DEFAULT_ADDRESS_FILE,
    ExchangeAddress,
    locate_exchange,
    read_exchange_address,
    write_exchange_address,
)
from agent_client.keys import AgentKeys, is_agent_id
from agent_client.metering import MeteredSession, ReceivedMeteredOffer
from agent_client.offers import QuoteCollection, QuoteRequest, ReceivedDecline
from agent_client.operator import OperatorClient
from agent_client.protocol import ContractState, DeclineCode, ErrorCode
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
    "ContractState",
    "DeclineCode",
    "Delivery",
    "ErrorCode",
    "ExchangeAddress",
    "ExchangeError",
    "KeyFileError",
    "MeteredSession",
    "NegotiationError",
    "NoDeal",
    "OfferDeclined",
    "OperatorClient",
    "Pricing",
    "ProtocolError",
    "ProviderStrategy",
    "QuoteCollection",
    "QuoteRequest",
    "Ranking",
    "ReceivedDecline",
    "ReceivedMeteredOffer",
    "ReceivedQuote",
    "RefusedError",
    "RejectedError",
    "RequestTimeout",
    "RetryableError",
    "SignatureRejected",
    "TargetPriceBuyer",
    "TaskDeclined",
    "WeightedRanking",
    "is_agent_id",
    "locate_exchange",
    "read_exchange_address",
    "write_exchange_address",
]
