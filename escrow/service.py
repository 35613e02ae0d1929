"""Escrow steps applied to the ledger inside the caller's transaction.

The exchange opens a contract and holds its price in one database
transaction, and settles it in the transaction that moves the contract to a
settled state, so a contract's state and its money never disagree.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from escrow.errors import EscrowError, InsufficientFunds
from escrow.machine import Settlement, hold_transfers, settle_transfers
from wallet import NewTransfer, TransferOutcome, TransferResult

__all__ = ["Escrow", "LedgerPort"]


class LedgerPort(Protocol):
    async def create_transfers(
        self, transfers: Sequence[NewTransfer], /, *, connection: Any = None
    ) -> list[TransferOutcome]: ...


class Escrow:
    def __init__(self, ledger: LedgerPort, /, *, fee_rate_bps: int) -> None:
        assert 0 <= fee_rate_bps <= 10_000
        self._ledger = ledger
        # The rate new contracts are opened with; a contract keeps its own.
        self.fee_rate_bps = fee_rate_bps

    async def hold(
        self,
        contract_id: str,
        /,
        *,
        buyer_account_id: str,
        price_millicredits: int,
        connection: Any,
    ) -> None:
        transfers = hold_transfers(
            contract_id, buyer_account_id=buyer_account_id, price_millicredits=price_millicredits
        )
        outcomes = await self._ledger.create_transfers(transfers, connection=connection)
        if outcomes[0].result is TransferResult.EXCEEDS_CREDITS:
            raise InsufficientFunds(contract_id=contract_id, amount_millicredits=price_millicredits)
        _require_ok(outcomes, contract_id=contract_id, step="hold")

    async def settle(
        self,
        contract_id: str,
        /,
        *,
        buyer_account_id: str,
        provider_account_id: str,
        settlement: Settlement,
        connection: Any,
    ) -> None:
        """End the hold as ``settlement`` says; a retried settlement is a no-op."""
        transfers = settle_transfers(
            contract_id,
            buyer_account_id=buyer_account_id,
            provider_account_id=provider_account_id,
            settlement=settlement,
        )
        outcomes = await self._ledger.create_transfers(transfers, connection=connection)
        _require_ok(outcomes, contract_id=contract_id, step=settlement.outcome.value)


def _require_ok(outcomes: Sequence[TransferOutcome], *, contract_id: str, step: str) -> None:
    for outcome in outcomes:
        if outcome.result is not TransferResult.OK:
            raise EscrowError(
                f"the ledger refused the {step}",
                code=outcome.result.value,
                contract_id=contract_id,
            )
