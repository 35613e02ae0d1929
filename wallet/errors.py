"""The wallet's errors.

Expected outcomes of money movement (insufficient funds, unknown accounts,
duplicates) are *results* (``TransferResult``), never exceptions. Exceptions
are for the database failing, for misuse of an API bound, and for a broken
invariant::

    WalletError
     ├── LedgerUnavailable     the database failed or is unreachable (reason, attempts)
     │    └── LedgerConflict   a concurrent transaction won a race: retry the unit of work
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
    "LedgerConflict",
    "LedgerRejected",
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
    def __init__(self, name: str, value: int, /, *, minimum: int, maximum: int) -> None:
        super().__init__(f"{name} must be within {minimum}..{maximum}, got {value}")
        self.name = name
        self.value = value
        self.minimum = minimum
        self.maximum = maximum


class MigrationFailed(WalletError):
    def __init__(self, reason: str, /) -> None:
        super().__init__(f"schema migration failed: {reason}")
        self.reason = reason
