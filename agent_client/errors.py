"""Errors raised by the agent client.

::

    AgentClientError
     ├── KeyFileError            a seed file is missing, unreadable or malformed
     ├── AddressFileError        an exchange address file is unreadable or malformed
     ├── ProtocolError           a message broke the wire protocol (carries ``code``)
     │    └── SignatureRejected  a signed document failed verification
     ├── ExchangeError           the exchange answered with a typed error (``code``)
     │    ├── RetryableError     transient: the same request may pass later (``should_retry``)
     │    ├── RefusedError       a valid request the exchange will not carry out now
     │    │                      (funds, spending controls, permission, contract state)
     │    └── RejectedError      the request itself is wrong (malformed, badly signed,
     │                           invalid); sending it again fails again
     ├── NegotiationError        a counter-offer got no quote back (``code``, ``provider_id``)
     │    └── OfferDeclined      the provider declined it (``code``, ``reason``)
     ├── NoDeal                  ``negotiate`` ended without an agreed quote (``declines``)
     ├── RequestTimeout          no answer within the request's timeout (``should_retry``)
     ├── TaskDeclined            a provider's task handler gives the task back (``reason``):
     │                           the contract is cancelled at once, the buyer refunded
     └── AgentClosed             the agent was used after ``close()``

Codes are the stable strings of :class:`agent_client.protocol.ErrorCode`
(and, for declines, :class:`agent_client.protocol.DeclineCode`). Which
subclass of :class:`ExchangeError` a code raises is decided in one table,
:data:`ERROR_CLASS_BY_CODE`, through :func:`exchange_error`; a code this
client does not know (from a newer exchange) raises the base class.

Every error has ``should_retry``: true only for :class:`RetryableError` and
:class:`RequestTimeout`. Retry a request that changes money with the same
idempotency key (``transfer_id``, ``mint_id``, ``request_id``), so that a
retry of a request that did land returns the first outcome.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from agent_client.protocol import ErrorCode

if TYPE_CHECKING:
    from agent_client.offers import ReceivedDecline

__all__ = [
    "ERROR_CLASS_BY_CODE",
    "AddressFileError",
    "AgentClientError",
    "AgentClosed",
    "ExchangeError",
    "KeyFileError",
    "NegotiationError",
    "NoDeal",
    "OfferDeclined",
    "ProtocolError",
    "RefusedError",
    "RejectedError",
    "RequestTimeout",
    "RetryableError",
    "SignatureRejected",
    "TaskDeclined",
    "exchange_error",
]


class AgentClientError(Exception):
    """Base of every error this package raises."""

    # Whether sending the same request again may succeed (stripe-python's
    # ``should_retry``); only transient failures say yes.
    should_retry: ClassVar[bool] = False


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
    """A typed error reply of the exchange or the portal; raise it with :func:`exchange_error`."""

    def __init__(self, code: str, message: str, *, contract_id: str | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.contract_id = contract_id


class RetryableError(ExchangeError):
    """Transient: nobody could answer now, or this agent is over its rate. Retry later."""

    should_retry: ClassVar[bool] = True


class RefusedError(ExchangeError):
    """The request was valid, but the exchange will not carry it out: not enough
    funds, the human's spending controls, no permission, or the contract's state."""


class RejectedError(ExchangeError):
    """The request itself is wrong: malformed, badly signed, expired, replayed or
    invalid. Sending it again fails the same way; fix the request instead."""


# Every ErrorCode raises exactly one of these (tests/agent_client/test_errors.py
# checks the table is complete).
ERROR_CLASS_BY_CODE: dict[ErrorCode, type[ExchangeError]] = {
    # Transient.
    ErrorCode.UNAVAILABLE: RetryableError,
    ErrorCode.RATE_LIMITED: RetryableError,
    ErrorCode.INTERNAL: RetryableError,
    # Valid, but refused: funds, controls, permission, state, timing of offers.
    ErrorCode.FORBIDDEN: RefusedError,
    ErrorCode.NOT_FOUND: RefusedError,
    ErrorCode.QUOTE_EXPIRED: RefusedError,
    ErrorCode.QUOTE_ALREADY_ACCEPTED: RefusedError,
    ErrorCode.OFFER_SUPERSEDED: RefusedError,
    ErrorCode.INSUFFICIENT_FUNDS: RefusedError,
    ErrorCode.INVALID_STATE: RefusedError,
    ErrorCode.NOT_SETTLED: RefusedError,
    ErrorCode.ALREADY_RATED: RefusedError,
    ErrorCode.PENDING_APPROVAL: RefusedError,
    ErrorCode.APPROVAL_REJECTED: RefusedError,
    ErrorCode.BUDGET_EXCEEDED: RefusedError,
    ErrorCode.AGENT_FROZEN: RefusedError,
    ErrorCode.LINK_CODE_INVALID: RefusedError,
    ErrorCode.PRICE_CHANGED: RefusedError,
    # The request itself: its form, its signature, its content.
    ErrorCode.MALFORMED: RejectedError,
    ErrorCode.UNKNOWN_KIND: RejectedError,
    ErrorCode.PAYLOAD_TOO_LARGE: RejectedError,
    ErrorCode.SUBJECT_MISMATCH: RejectedError,
    ErrorCode.CLOCK_SKEW: RejectedError,
    ErrorCode.EXPIRED: RejectedError,
    ErrorCode.LIFETIME_TOO_LONG: RejectedError,
    ErrorCode.REPLAYED: RejectedError,
    ErrorCode.BAD_SIGNATURE: RejectedError,
    ErrorCode.SIGNER_MISMATCH: RejectedError,
    ErrorCode.WRONG_AUDIENCE: RejectedError,
    ErrorCode.WRONG_KIND: RejectedError,
    ErrorCode.INVALID_REQUEST: RejectedError,
    ErrorCode.INVALID_NEGOTIATION: RejectedError,
    ErrorCode.HASH_MISMATCH: RejectedError,
    ErrorCode.RESULT_INCOMPLETE: RejectedError,
    ErrorCode.CONTENT_KEY_INVALID: RejectedError,
    ErrorCode.SCHEMA_MISMATCH: RejectedError,
    ErrorCode.INVALID_SCHEMA: RejectedError,
    ErrorCode.SCHEMA_TOO_COMPLEX: RejectedError,
    ErrorCode.IDEMPOTENCY_CONFLICT: RejectedError,
    ErrorCode.REPLY_MISMATCH: RejectedError,
}


def exchange_error(code: str, message: str, /, *, contract_id: str | None = None) -> ExchangeError:
    """The error a typed error reply raises: its class is decided by its code alone."""
    try:
        error_class = ERROR_CLASS_BY_CODE[ErrorCode(code)]
    except ValueError:
        error_class = ExchangeError
    return error_class(code, message, contract_id=contract_id)


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
    """No answer in time. The request may still have landed: retry it as it is
    (requests that move money carry an idempotency key for this)."""

    should_retry: ClassVar[bool] = True

    def __init__(self, subject: str, timeout_s: float) -> None:
        super().__init__(f"no reply on {subject} within {timeout_s} s")
        self.subject = subject
        self.timeout_s = timeout_s


class TaskDeclined(AgentClientError):
    """Raised by a provider's task handler that cannot do a hired task (and never will):
    the provider cancels the contract at once, so the buyer's price is returned now
    rather than at the delivery deadline. ``reason`` goes to the buyer (cut to the
    protocol's reason length)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class AgentClosed(AgentClientError):
    def __init__(self) -> None:
        super().__init__("the agent is closed")
