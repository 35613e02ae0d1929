"""The transfer fingerprint never changes: stored failures keep theirs forever.

A retry is recognised by comparing the fingerprint of its fields with the one
stored for its id, so a fingerprint computed today must equal the one
computed when the id was first decided. ``transfer_fingerprint`` assembles
its JSON by hand for speed; Hypothesis checks it against the reference
definition (SHA-256 of a prefix and ``json.dumps`` of the field list, compact
and ASCII-only) over arbitrary text, including quotes, backslashes, control
characters and non-ASCII, and one fixed digest guards the reference itself.
"""

from __future__ import annotations

import hashlib
import json

from hypothesis import given
from hypothesis import strategies as st

from wallet import LedgerId, NewTransfer, TransferCode, TransferFlags
from wallet.validation import transfer_fingerprint


def reference_fingerprint(transfer: NewTransfer) -> str:
    fields = [
        transfer.debit_account_id,
        transfer.credit_account_id,
        transfer.amount,
        int(transfer.ledger),
        int(transfer.code),
        int(transfer.flags),
        transfer.pending_id,
        transfer.timeout_s,
        transfer.user_data,
    ]
    encoded = json.dumps(fields, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(b"wallet.transfer.v1:" + encoded.encode("ascii")).hexdigest()


@given(
    debit=st.text(),
    credit=st.text(),
    amount=st.integers(-(2**70), 2**70),
    ledger=st.sampled_from(LedgerId),
    code=st.sampled_from(TransferCode),
    flags=st.integers(0, 255).map(TransferFlags),
    pending_id=st.none() | st.text(),
    timeout_s=st.integers(-(2**40), 2**40),
    user_data=st.text(),
)
def test_the_fingerprint_equals_the_reference_definition_for_any_fields(
    debit: str,
    credit: str,
    amount: int,
    ledger: LedgerId,
    code: TransferCode,
    flags: TransferFlags,
    pending_id: str | None,
    timeout_s: int,
    user_data: str,
) -> None:
    transfer = NewTransfer(
        id="any",
        debit_account_id=debit,
        credit_account_id=credit,
        amount=amount,
        ledger=ledger,
        code=code,
        flags=flags,
        pending_id=pending_id,
        timeout_s=timeout_s,
        user_data=user_data,
    )
    assert transfer_fingerprint(transfer) == reference_fingerprint(transfer)


def test_a_known_transfer_has_the_digest_it_always_had() -> None:
    transfer = NewTransfer(
        id="t1",
        debit_account_id="agent:alice",
        credit_account_id='agent:"bob"\\é',
        amount=1500,
        ledger=LedgerId.CREDITS,
        code=TransferCode.ESCROW_LOCK,
        flags=TransferFlags.PENDING | TransferFlags.LINKED,
        timeout_s=60,
        user_data="contract:42",
    )
    assert transfer_fingerprint(transfer) == reference_fingerprint(transfer)
    # Computed by the first implementation (json.dumps of the field list).
    assert transfer_fingerprint(transfer) == (
        "0f0ef2d363838dc3fb8b4513dcf3c84b696351a9fe339a85d8ec517f11a37589"
    )
