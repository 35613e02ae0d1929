"""The wallet's errors.

Expected outcomes of money movement (insufficient funds, unknown accounts,
duplicates) are *results* (``TransferResult``), never exceptions. Exceptions
are for the database failing, for misuse of an API bound, and for a broken
invariant::

    WalletError
     ├── LedgerUnavailable     the database failed or is unreachable (reason, attempts)
     │    ├── LedgerConflict   a concurrent transaction won a race: retry the unit of work
     │    ├── LedgerOverloaded the batching writer did not take the call in time, or too
     │    │                    many calls wait (queue_transfers_max, waited_s): nothing applied
     │    ├── LedgerTimeout    the call's group was still running at its timeout (timeout_s):
     │    │                    it may have been applied; retry with the same ids
     │    └── LedgerClosed     the batching writer is closing or closed (state): nothing applied
     ├── LedgerRejected        the database refused a write (CHECK, trigger): a bug or tampering
     ├── InvariantViolation    the stored ledger is inconsistent (violations)
     ├── UnsupportedDatabase   a URL the wallet cannot use (scheme, reason)
     ├── ValueOutOfRange       an argument outside its bounds (name, value, minimum, maximum)
     └── MigrationFailed       the schema could not be migrated (reason)

Foreign exceptions (sqlalchemy, asyncpg, sqlite3, alembic) are translated at
the edge and kept as ``__cause__``.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = [
    "InvariantViolation",
    "LedgerClosed",
    "LedgerConflict",
    "LedgerOverloaded",
    "LedgerRejected",
    "LedgerTimeout",
    "LedgerUnavailable",
    "MigrationFailed",
    "UnsupportedDatabase",
    "ValueOutOfRange",
    "WalletError",
]


class WalletError(Exception):
    """The root of every error the wallet raises."""


class LedgerUnavailable(WalletError):
    def __init__(self, reason: str, /, *, attempts: int = 1) -> None:
        super().__init__(f"ledger unavailable after {attempts} attempt(s): {reason}")
        self.reason = reason
        self.attempts = attempts


class LedgerConflict(LedgerUnavailable):
    """A deadlock, serialization failure, busy database or duplicate insert
    race. Nothing was written; running the same unit of work again is safe."""


class LedgerOverloaded(LedgerUnavailable):
    """Backpressure: the batching writer did not take the call into a group
    within its timeout (the queue was full, or the writer behind), or too
    many calls were already waiting for room (``waited_s`` is 0). Nothing
    was applied, nor ever will be; retry later."""

    def __init__(self, /, *, queue_transfers_max: int, waited_s: float) -> None:
        super().__init__(
            f"the batching writer did not take the call in {waited_s:.3f} s "
            f"(queue of at most {queue_transfers_max} transfers); nothing was applied"
        )
        self.queue_transfers_max = queue_transfers_max
        self.waited_s = waited_s


class LedgerTimeout(LedgerUnavailable):
    """The call's group was still running when its timeout came. Its transfers
    may have been applied: retry with the same ids to get the outcomes."""

    def __init__(self, /, *, timeout_s: float) -> None:
        super().__init__(
            f"no reply within {timeout_s:.3f} s; the transfers may have been applied, "
            "retry with the same ids"
        )
        self.timeout_s = timeout_s


class LedgerClosed(LedgerUnavailable):
    """The batching writer is closing or closed and takes no new transfers.
    Nothing of the refused call was applied."""

    def __init__(self, /, *, state: str) -> None:
        super().__init__(f"the batching writer is {state}; nothing was applied")
        self.state = state


class LedgerRejected(WalletError):
    def __init__(self, reason: str, /) -> None:
        super().__init__(f"the database refused a ledger write: {reason}")
        self.reason = reason


class InvariantViolation(WalletError):
    def __init__(self, violations: Sequence[str], /) -> None:
        assert len(violations) > 0
        self.violations = tuple(violations)
        listing = "\n".join(f"  - {violation}" for violation in self.violations)
        super().__init__(f"{len(self.violations)} ledger invariant(s) violated:\n{listing}")


class UnsupportedDatabase(WalletError):
    # The scheme only: a URL may carry a password, which must not reach logs.
    def __init__(self, scheme: str, /, *, reason: str) -> None:
        super().__init__(f"unsupported database URL scheme {scheme!r}: {reason}")
        self.scheme = scheme
        self.reason = reason


class ValueOutOfRange(WalletError):
    # Floats for timeouts; every amount and count is an int.
    def __init__(self, name: str, value: float, /, *, minimum: float, maximum: float) -> None:
        super().__init__(f"{name} must be within {minimum}..{maximum}, got {value}")
        self.name = name
        self.value = value
        self.minimum = minimum
        self.maximum = maximum


class MigrationFailed(WalletError):
    def __init__(self, reason: str, /) -> None:
        super().__init__(f"schema migration failed: {reason}")
        self.reason = reason
