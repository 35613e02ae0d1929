"""The ledger's vocabulary: ledgers, codes, flags, results and records.

These are plain values with no I/O. The model follows TigerBeetle: an account
keeps four totals (``debits_pending``, ``debits_posted``, ``credits_pending``,
``credits_posted``); a transfer is immutable and moves ``amount`` from its
debit account to its credit account on one ledger. A **pending** transfer
(an escrow hold) is later **posted** (maybe partially), **voided**, or it
**expires**, exactly once.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum, IntFlag, StrEnum

__all__ = [
    "AccountBalance",
    "AccountCode",
    "AccountFlags",
    "AccountOutcome",
    "AccountResult",
    "LedgerId",
    "NewAccount",
    "NewTransfer",
    "PendingStatus",
    "TransferCode",
    "TransferFlags",
    "TransferOutcome",
    "TransferRecord",
    "TransferResult",
]


class LedgerId(IntEnum):
    """A ledger is one unit of account; transfers never cross ledgers."""

    CREDITS = 1  # amounts in millicredits: 1 credit = 1,000 millicredits
    USD_CENTS = 2


class AccountCode(IntEnum):
    AGENT_WALLET = 1
    ESCROW = 2
    PLATFORM_REVENUE = 3
    # The operator (Stripe) source account. It has no balance limit, so its
    # debit balance is the total ever minted.
    ISSUANCE = 4


class AccountFlags(IntFlag):
    NONE = 0
    # A wallet: debits (pending and posted) may never exceed posted credits.
    DEBITS_MUST_NOT_EXCEED_CREDITS = 1


ACCOUNT_FLAGS_KNOWN = AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS


class TransferFlags(IntFlag):
    NONE = 0
    # This transfer and the next one succeed or fail together.
    LINKED = 1
    PENDING = 2
    POST_PENDING = 4
    VOID_PENDING = 8


TRANSFER_FLAGS_KNOWN = (
    TransferFlags.LINKED
    | TransferFlags.PENDING
    | TransferFlags.POST_PENDING
    | TransferFlags.VOID_PENDING
)


class TransferCode(IntEnum):
    """Why money moved; stored with every transfer for reporting."""

    MINT = 1
    ESCROW_LOCK = 2
    ESCROW_RELEASE = 3
    ESCROW_REFUND = 4
    FEE = 5
    PAYOUT = 6
    TRANSFER = 7
    EXPIRY = 8


class PendingStatus(StrEnum):
    """The life of a pending transfer: it leaves ``pending`` exactly once."""

    PENDING = "pending"
    POSTED = "posted"
    VOIDED = "voided"
    EXPIRED = "expired"


class AccountResult(StrEnum):
    OK = "ok"
    BATCH_TOO_LARGE = "batch_too_large"
    ID_INVALID = "id_invalid"
    FLAGS_INVALID = "flags_invalid"
    EXISTS_WITH_DIFFERENT_FIELDS = "exists_with_different_fields"


class TransferResult(StrEnum):
    """The outcome of one transfer; the values are stable wire codes."""

    OK = "ok"
    # The batch.
    BATCH_TOO_LARGE = "batch_too_large"
    LINKED_EVENT_FAILED = "linked_event_failed"
    LINKED_EVENT_CHAIN_OPEN = "linked_event_chain_open"
    # The transfer alone (deterministic, so never stored).
    ID_INVALID = "id_invalid"
    ID_RESERVED = "id_reserved"
    DEBIT_ACCOUNT_ID_INVALID = "debit_account_id_invalid"
    CREDIT_ACCOUNT_ID_INVALID = "credit_account_id_invalid"
    ACCOUNTS_MUST_BE_DIFFERENT = "accounts_must_be_different"
    FLAGS_INVALID = "flags_invalid"
    FLAGS_ARE_MUTUALLY_EXCLUSIVE = "flags_are_mutually_exclusive"
    PENDING_ID_REQUIRED = "pending_id_required"
    PENDING_ID_MUST_BE_ABSENT = "pending_id_must_be_absent"
    PENDING_ID_INVALID = "pending_id_invalid"
    PENDING_ID_MUST_BE_DIFFERENT = "pending_id_must_be_different"
    TIMEOUT_RESERVED_FOR_PENDING = "timeout_reserved_for_pending"
    TIMEOUT_MUST_NOT_BE_NEGATIVE = "timeout_must_not_be_negative"
    TIMEOUT_EXCEEDS_LIMIT = "timeout_exceeds_limit"
    AMOUNT_MUST_BE_POSITIVE = "amount_must_be_positive"
    AMOUNT_EXCEEDS_LIMIT = "amount_exceeds_limit"
    USER_DATA_TOO_LONG = "user_data_too_long"
    # Idempotency.
    EXISTS_WITH_DIFFERENT_FIELDS = "exists_with_different_fields"
    # The ledger's state (stored, so that a retry gets the same answer).
    DEBIT_ACCOUNT_NOT_FOUND = "debit_account_not_found"
    CREDIT_ACCOUNT_NOT_FOUND = "credit_account_not_found"
    ACCOUNTS_HAVE_DIFFERENT_LEDGERS = "accounts_have_different_ledgers"
    TRANSFER_LEDGER_MISMATCH = "transfer_ledger_mismatch"
    PENDING_TRANSFER_NOT_FOUND = "pending_transfer_not_found"
    PENDING_TRANSFER_NOT_PENDING = "pending_transfer_not_pending"
    PENDING_TRANSFER_HAS_DIFFERENT_DEBIT_ACCOUNT = "pending_transfer_has_different_debit_account"
    PENDING_TRANSFER_HAS_DIFFERENT_CREDIT_ACCOUNT = "pending_transfer_has_different_credit_account"
    PENDING_TRANSFER_HAS_DIFFERENT_AMOUNT = "pending_transfer_has_different_amount"
    PENDING_TRANSFER_ALREADY_POSTED = "pending_transfer_already_posted"
    PENDING_TRANSFER_ALREADY_VOIDED = "pending_transfer_already_voided"
    PENDING_TRANSFER_EXPIRED = "pending_transfer_expired"
    PENDING_AMOUNT_EXCEEDED = "pending_amount_exceeded"
    EXCEEDS_CREDITS = "exceeds_credits"
    OVERFLOWS_DEBITS = "overflows_debits"
    OVERFLOWS_CREDITS = "overflows_credits"


@dataclass(frozen=True, slots=True)
class NewAccount:
    """An account to create. ``flags`` has no default on purpose: forgetting
    ``DEBITS_MUST_NOT_EXCEED_CREDITS`` on a wallet would let it go negative."""

    id: str
    ledger: LedgerId
    code: AccountCode
    flags: AccountFlags

    def __post_init__(self) -> None:
        assert isinstance(self.id, str)
        assert isinstance(self.ledger, LedgerId)
        assert isinstance(self.code, AccountCode)
        assert isinstance(self.flags, AccountFlags)


@dataclass(frozen=True, slots=True)
class AccountOutcome:
    id: str
    result: AccountResult
    # True when the account already existed with identical fields.
    replayed: bool = False


@dataclass(frozen=True, slots=True)
class AccountBalance:
    id: str
    ledger: LedgerId
    code: AccountCode
    flags: AccountFlags
    debits_pending: int
    debits_posted: int
    credits_pending: int
    credits_posted: int

    @property
    def available(self) -> int:
        """What the account can spend now: held funds are not available."""
        return self.credits_posted - self.debits_posted - self.debits_pending

    @property
    def held(self) -> int:
        return self.debits_pending


@dataclass(frozen=True, slots=True)
class NewTransfer:
    """A transfer to apply. ``id`` is the idempotency key.

    ``POST_PENDING`` and ``VOID_PENDING`` name the pending transfer in
    ``pending_id`` and repeat its debit account, credit account and ledger; a
    post moves 1..pending amount (the rest is released), a void repeats the
    pending amount. ``timeout_s`` is for ``PENDING`` only (0 = never expires).
    """

    id: str
    debit_account_id: str
    credit_account_id: str
    amount: int
    ledger: LedgerId
    code: TransferCode
    flags: TransferFlags = TransferFlags.NONE
    pending_id: str | None = None
    timeout_s: int = 0
    user_data: str = ""

    def __post_init__(self) -> None:
        # Types are a programmer's error, values are the ledger's to judge:
        # a float amount must never reach the database.
        assert isinstance(self.id, str)
        assert isinstance(self.debit_account_id, str)
        assert isinstance(self.credit_account_id, str)
        assert type(self.amount) is int, "amounts are integers"
        assert isinstance(self.ledger, LedgerId)
        assert isinstance(self.code, TransferCode)
        assert isinstance(self.flags, TransferFlags)
        assert self.pending_id is None or isinstance(self.pending_id, str)
        assert type(self.timeout_s) is int
        assert isinstance(self.user_data, str)


@dataclass(frozen=True, slots=True)
class TransferOutcome:
    id: str
    result: TransferResult
    # True when this id was decided earlier and the first outcome is returned.
    replayed: bool = False
    # When the transfer was applied (or its stored failure decided); None for
    # outcomes that were never recorded.
    timestamp_us: int | None = None


@dataclass(frozen=True, slots=True)
class TransferRecord:
    """A transfer as stored, with the timestamp the ledger gave it."""

    id: str
    debit_account_id: str
    credit_account_id: str
    amount: int
    ledger: LedgerId
    code: TransferCode
    flags: TransferFlags
    pending_id: str | None
    timeout_s: int
    user_data: str
    timestamp_us: int

    def as_new_transfer(self) -> NewTransfer:
        return NewTransfer(
            id=self.id,
            debit_account_id=self.debit_account_id,
            credit_account_id=self.credit_account_id,
            amount=self.amount,
            ledger=self.ledger,
            code=self.code,
            flags=self.flags,
            pending_id=self.pending_id,
            timeout_s=self.timeout_s,
            user_data=self.user_data,
        )
