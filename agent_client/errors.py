"""Errors raised by the agent client.

::

    AgentClientError
     ├── KeyFileError            a seed file is missing, unreadable or malformed
     ├── ProtocolError           a message broke the wire protocol (carries ``code``)
     │    └── SignatureRejected  a signed document failed verification
     ├── ExchangeError           the exchange answered with a typed error (``code``)
     ├── RequestTimeout          no answer within the request's timeout
     └── AgentClosed             the agent was used after ``close()``

Codes are the stable strings of :class:`agent_client.protocol.ErrorCode`.
"""

from __future__ import annotations

__all__ = [
    "AgentClientError",
    "AgentClosed",
    "ExchangeError",
    "KeyFileError",
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


class RequestTimeout(AgentClientError):
    def __init__(self, subject: str, timeout_s: float) -> None:
        super().__init__(f"no reply on {subject} within {timeout_s} s")
        self.subject = subject
        self.timeout_s = timeout_s


class AgentClosed(AgentClientError):
    def __init__(self) -> None:
        super().__init__("the agent is closed")
