"""What a signed-request service tells an observer about each request (metrics).

The service (broker/signed_service.py) calls these hooks; a worker passes an
observer that feeds Prometheus (exchange/bootstrap/worker_metrics.py), and
everything else gets :data:`NO_OBSERVER`. The hooks are synchronous and must
not block: they run on the request's path.
"""

from __future__ import annotations

from typing import Final, Protocol

__all__ = ["NOT_ANSWERED", "NO_OBSERVER", "OK", "RequestObserver"]

# The code counted for an answered request that is not an error.
OK: Final = "ok"
# The code counted for a request dropped without an answer (a flooding agent).
NOT_ANSWERED: Final = "not_answered"


class RequestObserver(Protocol):
    def request_answered(self, endpoint: str, code: str, duration_s: float, /) -> None:
        """A request that reached its use case was answered with ``code`` (``ok`` or an
        error code) ``duration_s`` after it was taken."""
        ...

    def request_refused(self, endpoint: str, code: str, /) -> None:
        """A request was refused before its use case ran (admission, verification)."""
        ...

    def use_case_raised(self, endpoint: str, error: Exception, /) -> None:
        """The use case raised ``error`` (mapped to an error reply or not)."""
        ...


class _NoObserver:
    def request_answered(self, endpoint: str, code: str, duration_s: float, /) -> None:
        pass

    def request_refused(self, endpoint: str, code: str, /) -> None:
        pass

    def use_case_raised(self, endpoint: str, error: Exception, /) -> None:
        pass


NO_OBSERVER: Final[RequestObserver] = _NoObserver()
