"""The portal's errors.

Bad input, wrong passwords, refused links and webhooks are expected: each is
a typed error with a stable ``code``, an HTTP status and fields, raised
before anything is written (a use case checks, then writes in one
transaction). The web layer turns them into an error page or a JSON body::

    PortalError                       code, message, http_status
     ├── InvalidInput                 a field is missing or malformed (field, problem)
     │    └── FormErrors              several fields at once (problems: field → problem)
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

from collections.abc import Mapping
from typing import ClassVar

from agent_client.credit_text import credits_in_words
from wallet import MILLICREDITS_PER_USD_CENT

__all__ = [
    "AgentFrozen",
    "AuthenticationFailed",
    "Conflict",
    "CsrfRejected",
    "FormErrors",
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
    """One field's mistake. ``problem`` is written for the person who typed it
    (shown beside the field, never after its name); ``message`` adds the
    field's name for API clients and agents, who have no form to look at."""

    code = "invalid_input"
    http_status = 422

    def __init__(self, field: str, problem: str, /) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


class FormErrors(InvalidInput):
    """Every mistake of one form, found together so that a person fixes them in one go.

    ``field`` and ``problem`` are the first mistake's (what an API client
    reads); ``problems`` holds them all, in the form's order.
    """

    def __init__(self, problems: Mapping[str, str], /) -> None:
        assert problems, "a form with no mistake is not an error"
        field, problem = next(iter(problems.items()))
        super().__init__(field, problem)
        self.problems = dict(problems)
        self.message = "; ".join(f"{name}: {text}" for name, text in problems.items())
        self.args = (self.message,)


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
            f"the agent has {_credits_and_dollars(available_millicredits)} available; "
            f"this needs {_credits_and_dollars(requested_millicredits)}"
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


def _credits_and_dollars(amount_millicredits: int, /) -> str:
    """'117 credits ($11.70)': people read credits and dollars, never millicredits.

    The dollars are written out here because the portal's money formatters
    (``money_rules``) raise these errors and so cannot be imported by them.
    A fraction of a cent is cut, never rounded up.
    """
    dollars, cents = divmod(abs(amount_millicredits) // MILLICREDITS_PER_USD_CENT, 100)
    sign = "-" if amount_millicredits < 0 else ""
    return f"{credits_in_words(amount_millicredits)} ({sign}${dollars:,}.{cents:02d})"
