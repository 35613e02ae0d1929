"""The portal's errors.

Bad input, wrong passwords, refused links and webhooks are expected: each is
a typed error with a stable ``code``, an HTTP status and fields, raised
before anything is written (a use case checks, then writes in one
transaction). The web layer turns them into an error page or a JSON body::

    PortalError                       code, message, http_status
     ├── InvalidInput                 a field is missing or malformed (field)
     ├── AuthenticationFailed         wrong email or password, or no session / token
     ├── RateLimited                  too many attempts (retry_after_s)
     ├── CsrfRejected                 a form without the session's CSRF token
     ├── PermissionDenied             signed in, but not allowed (an operator page)
     ├── NotFound                     no such thing, or not yours (what)
     ├── Conflict                     the state forbids it: email taken, agent linked elsewhere
     ├── LinkRejected                 a link code or its agent signature is refused (reason)
     ├── WebhookRejected              a Stripe webhook failed verification (reason)
     ├── LimitExceeded                an amount outside its bounds (limit, requested)
     ├── InsufficientFunds            the agent's available credits are below the amount
     ├── AgentFrozen                  the agent's spending is frozen
     ├── PaymentProviderFailed        Stripe refused or could not be reached (retryable)
     └── ServiceUnavailable           the exchange (over NATS) did not answer

Foreign exceptions (stripe, argon2, sqlalchemy via the wallet) are translated
at the edge and kept as ``__cause__``.
"""

from __future__ import annotations

from typing import ClassVar

__all__ = [
    "AgentFrozen",
    "AuthenticationFailed",
    "Conflict",
    "CsrfRejected",
    "InsufficientFunds",
    "InvalidInput",
    "LimitExceeded",
    "LinkRejected",
    "NotFound",
    "PaymentProviderFailed",
    "PermissionDenied",
    "PortalError",
    "RateLimited",
    "ServiceUnavailable",
    "WebhookRejected",
]


class PortalError(Exception):
    """The root of every error the portal raises on purpose."""

    code: ClassVar[str] = "portal_error"
    http_status: ClassVar[int] = 400

    def __init__(self, message: str, /) -> None:
        super().__init__(message)
        self.message = message


class InvalidInput(PortalError):
    code = "invalid_input"
    http_status = 422

    def __init__(self, field: str, message: str, /) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


class AuthenticationFailed(PortalError):
    code = "authentication_failed"
    http_status = 401


class RateLimited(PortalError):
    code = "rate_limited"
    http_status = 429

    def __init__(self, message: str, /, *, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class CsrfRejected(PortalError):
    code = "csrf_rejected"
    http_status = 403


class PermissionDenied(PortalError):
    code = "permission_denied"
    http_status = 403


class NotFound(PortalError):
    code = "not_found"
    http_status = 404

    def __init__(self, what: str, /) -> None:
        super().__init__(f"no such {what}")
        self.what = what


class Conflict(PortalError):
    code = "conflict"
    http_status = 409


class LinkRejected(PortalError):
    code = "link_rejected"
    http_status = 400

    def __init__(self, reason: str, message: str, /) -> None:
        super().__init__(message)
        self.reason = reason


class WebhookRejected(PortalError):
    code = "webhook_rejected"
    http_status = 400

    def __init__(self, reason: str, message: str, /) -> None:
        super().__init__(message)
        self.reason = reason


class LimitExceeded(PortalError):
    code = "limit_exceeded"
    http_status = 422

    def __init__(self, message: str, /, *, limit: int, requested: int) -> None:
        super().__init__(message)
        self.limit = limit
        self.requested = requested


class InsufficientFunds(PortalError):
    code = "insufficient_funds"
    http_status = 409

    def __init__(self, *, available_millicredits: int, requested_millicredits: int) -> None:
        super().__init__(
            f"the agent has {available_millicredits} millicredits available, "
            f"{requested_millicredits} are needed"
        )
        self.available_millicredits = available_millicredits
        self.requested_millicredits = requested_millicredits


class AgentFrozen(PortalError):
    code = "agent_frozen"
    http_status = 409

    def __init__(self, agent_id: str, /) -> None:
        super().__init__("the agent's spending is frozen")
        self.agent_id = agent_id


class PaymentProviderFailed(PortalError):
    code = "payment_provider_failed"
    http_status = 502

    def __init__(self, message: str, /, *, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


class ServiceUnavailable(PortalError):
    code = "unavailable"
    http_status = 503
