"""Errors raised by the agent client.

::

    AgentClientError
     ├── KeyFileError            a seed file is missing, unreadable or malformed
     ├── AddressFileError        an exchange address file is unreadable or malformed
     ├── ProtocolError           a message broke the wire protocol (carries ``code``)
     │    └── SignatureRejected  a signed document failed verification
     ├── ExchangeError           the exchange answered with a typed error (``code``)
     ├── NegotiationError        a counter-offer got no quote back (``code``, ``provider_id``)
     │    └── OfferDeclined      the provider declined it (``code``, ``reason``)
     ├── NoDeal                  ``negotiate`` ended without an agreed quote (``declines``)
     ├── RequestTimeout          no answer within the request's timeout
     └── AgentClosed             the agent was used after ``close()``

Codes are the stable strings of :class:`agent_client.protocol.ErrorCode`
(and, for declines, :class:`agent_client.protocol.DeclineCode`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from agent_client.offers import ReceivedDecline

__all__ = [
    "AddressFileError",
    "AgentClientError",
    "AgentClosed",
    "ExchangeError",
    "KeyFileError",
    "NegotiationError",
    "NoDeal",
    "OfferDeclined",
    "ProtocolError",
    "RequestTimeout",
    "SignatureRejected",
]


class AgentClientError(Exception):
    """Base of every error this package raises."""


class KeyFileError(AgentClientError):
    def __init__(self, message: str, *, path: str | None = None) -> None:
        super().__init__(message)
        self.path = path


class AddressFileError(AgentClientError):
    def __init__(self, message: str, *, path: str) -> None:
        super().__init__(message)
        self.path = path


class ProtocolError(AgentClientError):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class SignatureRejected(ProtocolError):
    """A signed document failed one of the receiver's checks."""


class ExchangeError(AgentClientError):
    def __init__(self, code: str, message: str, *, contract_id: str | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.contract_id = contract_id


class NegotiationError(AgentClientError):
    """A counter-offer did not bring a new quote (unreachable provider, bad answer)."""

    def __init__(self, code: str, message: str, *, provider_id: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.provider_id = provider_id


class OfferDeclined(NegotiationError):
    """The provider answered a counter-offer with a signed decline (kept in ``decline``)."""

    def __init__(self, decline: ReceivedDecline, /) -> None:
        reason = decline.reason or "declined"
        super().__init__(decline.code, reason, provider_id=decline.provider_id)
        self.reason = decline.reason
        self.decline = decline


class NoDeal(AgentClientError):
    """Every negotiation of an RFQ ended without an offer the strategy accepted.

    ``declines`` holds each provider's decline (of the RFQ or of a
    counter-offer); ``walked_away_from`` the providers the buyer left.
    """

    def __init__(
        self,
        message: str,
        *,
        declines: tuple[ReceivedDecline, ...],
        walked_away_from: tuple[str, ...],
        quotes_received: int,
    ) -> None:
        super().__init__(message)
        self.declines = declines
        self.walked_away_from = walked_away_from
        self.quotes_received = quotes_received


class RequestTimeout(AgentClientError):
    def __init__(self, subject: str, timeout_s: float) -> None:
        super().__init__(f"no reply on {subject} within {timeout_s} s")
        self.subject = subject
        self.timeout_s = timeout_s


class AgentClosed(AgentClientError):
    def __init__(self) -> None:
        super().__init__("the agent is closed")
