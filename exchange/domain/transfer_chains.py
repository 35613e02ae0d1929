"""Direct transfers between agents (pure): the reference and the ledger chain.

A payer sends ``amount``; the payee receives ``amount - fee`` and the
platform's revenue account the fee (``fee = amount * bps // 10_000``, the
transfer fee of the fee schedule). Both legs are one linked chain, so either
both happen or neither does.

The payer names the transfer with its own ``transfer_id``. The exchange
derives the transfer's reference from (payer, transfer_id), and every ledger
id from the reference, so a retry is the same ledger request and can never
pay twice; two payers choosing the same ``transfer_id`` never collide.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from escrow import REVENUE_ACCOUNT_ID
from wallet import LedgerId, NewTransfer, TransferCode, TransferFlags, fee_split

__all__ = ["TransferSplit", "transfer_chain", "transfer_reference", "transfer_split"]

_REFERENCE_HEX_LENGTH = 32


@dataclass(frozen=True, slots=True)
class TransferSplit:
    amount_millicredits: int
    fee_millicredits: int
    net_millicredits: int

    def __post_init__(self) -> None:
        assert self.amount_millicredits > 0
        assert self.fee_millicredits >= 0 and self.net_millicredits >= 0
        assert self.fee_millicredits + self.net_millicredits == self.amount_millicredits


def transfer_split(amount_millicredits: int, /, *, fee_rate_bps: int) -> TransferSplit:
    fee, net = fee_split(amount_millicredits, rate_bps=fee_rate_bps)
    return TransferSplit(amount_millicredits, fee, net)


def transfer_reference(payer_id: str, transfer_id: str, /) -> str:
    digest = hashlib.sha256(f"{payer_id}\n{transfer_id}".encode()).hexdigest()
    return "t_" + digest[:_REFERENCE_HEX_LENGTH]


def transfer_chain(
    reference: str,
    /,
    *,
    payer_account_id: str,
    payee_account_id: str,
    split: TransferSplit,
) -> list[NewTransfer]:
    """The payee's net and the platform's fee, linked; a zero leg is left out."""
    legs = [
        ("net", payee_account_id, split.net_millicredits, TransferCode.TRANSFER),
        ("fee", REVENUE_ACCOUNT_ID, split.fee_millicredits, TransferCode.FEE),
    ]
    legs = [leg for leg in legs if leg[2] > 0]
    chain = []
    for index, (leg, credit_account_id, amount, code) in enumerate(legs):
        is_last = index == len(legs) - 1
        chain.append(
            NewTransfer(
                id=f"transfer:{reference}:{leg}",
                debit_account_id=payer_account_id,
                credit_account_id=credit_account_id,
                amount=amount,
                ledger=LedgerId.CREDITS,
                code=code,
                flags=TransferFlags.NONE if is_last else TransferFlags.LINKED,
                user_data=reference,
            )
        )
    assert sum(transfer.amount for transfer in chain) == split.amount_millicredits
    return chain
