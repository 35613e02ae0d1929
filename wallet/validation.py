"""Checks that need nothing but the account or transfer itself (pure).

Their failures are deterministic, so the ledger never stores them: the same
request fails the same way every time. Failures that depend on the ledger's
state are listed in ``STORED_RESULTS``; those are stored, so a retry gets the
first answer even after the state changed.
"""

from __future__ import annotations

import hashlib
from json.encoder import encode_basestring_ascii as _json_string

from wallet.limits import (
    ID_LENGTH_MAX,
    PENDING_TIMEOUT_S_MAX,
    TRANSFER_AMOUNT_MAX,
    USER_DATA_LENGTH_MAX,
)
from wallet.model import (
    ACCOUNT_FLAGS_KNOWN,
    TRANSFER_FLAGS_KNOWN,
    AccountResult,
    NewAccount,
    NewTransfer,
    TransferFlags,
    TransferResult,
)

__all__ = [
    "RESERVED_TRANSFER_ID_PREFIX",
    "STORED_RESULTS",
    "expiry_transfer_id",
    "transfer_fingerprint",
    "validate_account",
    "validate_transfer",
]

# Transfer ids the ledger writes itself (expiry voids) start with this prefix,
# so no client id can collide with them.
RESERVED_TRANSFER_ID_PREFIX = "ledger:"

STORED_RESULTS = frozenset(
    {
        TransferResult.DEBIT_ACCOUNT_NOT_FOUND,
        TransferResult.CREDIT_ACCOUNT_NOT_FOUND,
        TransferResult.ACCOUNTS_HAVE_DIFFERENT_LEDGERS,
        TransferResult.TRANSFER_LEDGER_MISMATCH,
        TransferResult.PENDING_TRANSFER_NOT_FOUND,
        TransferResult.PENDING_TRANSFER_NOT_PENDING,
        TransferResult.PENDING_TRANSFER_HAS_DIFFERENT_DEBIT_ACCOUNT,
        TransferResult.PENDING_TRANSFER_HAS_DIFFERENT_CREDIT_ACCOUNT,
        TransferResult.PENDING_TRANSFER_HAS_DIFFERENT_AMOUNT,
        TransferResult.PENDING_TRANSFER_ALREADY_POSTED,
        TransferResult.PENDING_TRANSFER_ALREADY_VOIDED,
        TransferResult.PENDING_TRANSFER_EXPIRED,
        TransferResult.PENDING_AMOUNT_EXCEEDED,
        TransferResult.EXCEEDS_CREDITS,
        TransferResult.OVERFLOWS_DEBITS,
        TransferResult.OVERFLOWS_CREDITS,
    }
)

_FINGERPRINT_PREFIX = b"wallet.transfer.v1:"
_RESOLVING_FLAGS = TransferFlags.POST_PENDING | TransferFlags.VOID_PENDING
_KIND_FLAGS = TransferFlags.PENDING | _RESOLVING_FLAGS


def _id_valid(identifier: str) -> bool:
    return 1 <= len(identifier) <= ID_LENGTH_MAX


def validate_account(account: NewAccount, /) -> AccountResult:
    if not _id_valid(account.id):
        return AccountResult.ID_INVALID
    if int(account.flags) & ~int(ACCOUNT_FLAGS_KNOWN):
        return AccountResult.FLAGS_INVALID
    return AccountResult.OK


def validate_transfer(transfer: NewTransfer, /) -> TransferResult:
    """The first failing check in a fixed order, or ``ok``."""
    if not _id_valid(transfer.id):
        return TransferResult.ID_INVALID
    if transfer.id.startswith(RESERVED_TRANSFER_ID_PREFIX):
        return TransferResult.ID_RESERVED
    if int(transfer.flags) & ~int(TRANSFER_FLAGS_KNOWN):
        return TransferResult.FLAGS_INVALID
    if (int(transfer.flags) & int(_KIND_FLAGS)).bit_count() > 1:
        return TransferResult.FLAGS_ARE_MUTUALLY_EXCLUSIVE
    result = _validate_pending_id(transfer)
    if result is TransferResult.OK:
        result = _validate_timeout(transfer)
    if result is TransferResult.OK:
        result = _validate_accounts_and_amount(transfer)
    return result


def _validate_pending_id(transfer: NewTransfer) -> TransferResult:
    if int(transfer.flags) & int(_RESOLVING_FLAGS):
        if transfer.pending_id is None:
            return TransferResult.PENDING_ID_REQUIRED
        if not _id_valid(transfer.pending_id):
            return TransferResult.PENDING_ID_INVALID
        if transfer.pending_id == transfer.id:
            return TransferResult.PENDING_ID_MUST_BE_DIFFERENT
    elif transfer.pending_id is not None:
        return TransferResult.PENDING_ID_MUST_BE_ABSENT
    return TransferResult.OK


def _validate_timeout(transfer: NewTransfer) -> TransferResult:
    if transfer.timeout_s < 0:
        return TransferResult.TIMEOUT_MUST_NOT_BE_NEGATIVE
    if transfer.timeout_s > 0 and TransferFlags.PENDING not in transfer.flags:
        return TransferResult.TIMEOUT_RESERVED_FOR_PENDING
    if transfer.timeout_s > PENDING_TIMEOUT_S_MAX:
        return TransferResult.TIMEOUT_EXCEEDS_LIMIT
    return TransferResult.OK


def _validate_accounts_and_amount(transfer: NewTransfer) -> TransferResult:
    if not _id_valid(transfer.debit_account_id):
        return TransferResult.DEBIT_ACCOUNT_ID_INVALID
    if not _id_valid(transfer.credit_account_id):
        return TransferResult.CREDIT_ACCOUNT_ID_INVALID
    if transfer.debit_account_id == transfer.credit_account_id:
        return TransferResult.ACCOUNTS_MUST_BE_DIFFERENT
    if transfer.amount <= 0:
        return TransferResult.AMOUNT_MUST_BE_POSITIVE
    if transfer.amount > TRANSFER_AMOUNT_MAX:
        return TransferResult.AMOUNT_EXCEEDS_LIMIT
    if len(transfer.user_data) > USER_DATA_LENGTH_MAX:
        return TransferResult.USER_DATA_TOO_LONG
    return TransferResult.OK


def transfer_fingerprint(transfer: NewTransfer, /) -> str:
    """A digest of every field but the id: equal digests mean a true retry.

    The digest is over the compact, ASCII-only JSON of the list of fields
    ``[debit_account_id, credit_account_id, amount, ledger, code, flags,
    pending_id, timeout_s, user_data]``, which is canonical for strings, ints
    and null, and keeps field boundaries unambiguous whatever the ids contain.
    The JSON is assembled here with the very string encoder ``json.dumps``
    uses (the list form costs several times more, and this runs for every
    transfer); a test pins the digests to ``json.dumps``, since stored
    failures keep theirs forever.
    """
    pending_id = "null" if transfer.pending_id is None else _json_string(transfer.pending_id)
    encoded = (
        f"[{_json_string(transfer.debit_account_id)},{_json_string(transfer.credit_account_id)},"
        f"{transfer.amount:d},{int(transfer.ledger):d},{int(transfer.code):d},"
        f"{int(transfer.flags):d},{pending_id},{transfer.timeout_s:d},"
        f"{_json_string(transfer.user_data)}]"
    )
    return hashlib.sha256(_FINGERPRINT_PREFIX + encoded.encode("ascii")).hexdigest()


def expiry_transfer_id(pending_id: str, /) -> str:
    """The id of the void the ledger writes when ``pending_id`` expires.

    A digest keeps it within ``ID_LENGTH_MAX`` for any pending id; the record
    also names the pending transfer in ``pending_id``.
    """
    digest = hashlib.sha256(pending_id.encode("utf-8")).hexdigest()[:32]
    expiry_id = f"{RESERVED_TRANSFER_ID_PREFIX}expiry:{digest}"
    assert _id_valid(expiry_id)
    return expiry_id
