"""Errors of the escrow package.

::

    EscrowError                 the ledger refused an escrow step (``code``)
     └── InsufficientFunds      the buyer cannot cover the price

``code`` is the wallet's transfer result that caused the refusal.
"""

from __future__ import annotations

__all__ = ["EscrowError", "InsufficientFunds"]


class EscrowError(Exception):
    def __init__(self, message: str, *, code: str, contract_id: str) -> None:
        super().__init__(f"{message} (contract {contract_id}: {code})")
        self.code = code
        self.contract_id = contract_id


class InsufficientFunds(EscrowError):
    def __init__(self, *, contract_id: str, amount_millicredits: int) -> None:
        super().__init__(
            "the buyer's available balance is below the price",
            code="exceeds_credits",
            contract_id=contract_id,
        )
        self.amount_millicredits = amount_millicredits
