"""Escrow steps applied to the ledger inside the caller's transaction.

The exchange opens a contract and holds its price in one database
transaction, and settles it in the transaction that moves the contract to a
settled state, so a contract's state and its money never disagree.

``hold`` and ``settle`` take one contract's order; ``hold_and_settle_all``
takes many holds and settlements in one ledger call (the exchange's group
commit), the holds first, each contract on its own: one refused leaves the
others applied, and each gets the answer ``hold`` or ``settle`` would have
given it. The group pays the ledger's reads once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from escrow.errors import EscrowError, InsufficientFunds
from escrow.machine import (
    MeteredCapture,
    Settlement,
    hold_transfers,
    metered_hold_transfers,
    metered_release_transfers,
    settle_transfers,
)
from wallet import NewTransfer, TransferOutcome, TransferResult

__all__ = ["Escrow", "HoldOrder", "LedgerPort", "SettleOrder"]


class LedgerPort(Protocol):
    async def create_transfers(
        self, transfers: Sequence[NewTransfer], /, *, connection: Any = None
    ) -> list[TransferOutcome]: ...

    async def create_transfer_batches(
        self, batches: Sequence[Sequence[NewTransfer]], /, *, connection: Any = None
    ) -> list[list[TransferOutcome]]: ...


@dataclass(frozen=True, slots=True)
class HoldOrder:
    contract_id: str
    buyer_account_id: str
    price_millicredits: int

    def transfers(self) -> list[NewTransfer]:
        return hold_transfers(
            self.contract_id,
            buyer_account_id=self.buyer_account_id,
            price_millicredits=self.price_millicredits,
        )


@dataclass(frozen=True, slots=True)
class SettleOrder:
    contract_id: str
    buyer_account_id: str
    provider_account_id: str
    settlement: Settlement

    def transfers(self) -> list[NewTransfer]:
        return settle_transfers(
            self.contract_id,
            buyer_account_id=self.buyer_account_id,
            provider_account_id=self.provider_account_id,
            settlement=self.settlement,
        )


class Escrow:
    """Holds and settlements on the ledger; the fee of each is in its order."""

    def __init__(self, ledger: LedgerPort, /) -> None:
        self._ledger = ledger

    async def hold(self, order: HoldOrder, /, *, connection: Any) -> None:
        """One hold: a batch of one, by the same path as a group's."""
        (refusal,), _ = await self.hold_and_settle_all([order], [], connection=connection)
        if refusal is not None:
            raise refusal

    async def settle(self, order: SettleOrder, /, *, connection: Any) -> None:
        """End the hold as the order's settlement says; a retried settlement is a no-op."""
        _, (refusal,) = await self.hold_and_settle_all([], [order], connection=connection)
        if refusal is not None:
            raise refusal

    async def charge(self, hold: HoldOrder, settle: SettleOrder, /, *, connection: Any) -> None:
        """Hold a price and pay it out at once, in one ledger call (a subscription's
        period, a digital good): a held purchase counts in the buyer's spending like
        any other, and a retried charge is the same transfers, applied once."""
        assert hold.contract_id == settle.contract_id
        (held,), (settled,) = await self.hold_and_settle_all(
            [hold], [settle], connection=connection
        )
        refusal = held or settled
        if refusal is not None:
            raise refusal

    async def metered_hold(
        self,
        contract_id: str,
        buyer_account_id: str,
        ceiling_millicredits: int,
        /,
        *,
        connection: Any,
    ) -> None:
        """Hold a metered session's ceiling (InsufficientFunds when it does not fit)."""
        order = HoldOrder(contract_id, buyer_account_id, ceiling_millicredits)
        transfers = metered_hold_transfers(
            contract_id,
            buyer_account_id=buyer_account_id,
            ceiling_millicredits=ceiling_millicredits,
        )
        outcomes = await self._ledger.create_transfers(transfers, connection=connection)
        refusal = _hold_refusal(order, outcomes)
        if refusal is not None:
            raise refusal

    async def metered_capture(self, capture: MeteredCapture, /, *, connection: Any) -> None:
        """Capture part of a session's hold and pay it out, atomically; a retry is a no-op."""
        outcomes = await self._ledger.create_transfers(capture.transfers(), connection=connection)
        refusal = _refusal(outcomes, contract_id=capture.contract_id, step="capture")
        if refusal is not None:
            raise refusal

    async def metered_release(
        self,
        contract_id: str,
        buyer_account_id: str,
        /,
        *,
        hold_sequence: int,
        held_millicredits: int,
        connection: Any,
    ) -> None:
        """Return a closing session's uncaptured hold to the buyer."""
        transfers = metered_release_transfers(
            contract_id,
            buyer_account_id=buyer_account_id,
            hold_sequence=hold_sequence,
            held_millicredits=held_millicredits,
        )
        if not transfers:
            return
        outcomes = await self._ledger.create_transfers(transfers, connection=connection)
        refusal = _refusal(outcomes, contract_id=contract_id, step="release")
        if refusal is not None:
            raise refusal

    async def hold_and_settle_all(
        self, holds: Sequence[HoldOrder], settles: Sequence[SettleOrder], /, *, connection: Any
    ) -> tuple[list[EscrowError | None], list[EscrowError | None]]:
        """The holds, then the settlements, in one ledger call; per order None or its refusal."""
        batches = [order.transfers() for order in holds] + [order.transfers() for order in settles]
        outcomes = await self._ledger.create_transfer_batches(batches, connection=connection)
        held, settled = outcomes[: len(holds)], outcomes[len(holds) :]
        return (
            [_hold_refusal(order, batch) for order, batch in zip(holds, held, strict=True)],
            [_settle_refusal(order, batch) for order, batch in zip(settles, settled, strict=True)],
        )


def _hold_refusal(order: HoldOrder, outcomes: Sequence[TransferOutcome]) -> EscrowError | None:
    if outcomes[0].result is TransferResult.EXCEEDS_CREDITS:
        return InsufficientFunds(
            contract_id=order.contract_id, amount_millicredits=order.price_millicredits
        )
    return _refusal(outcomes, contract_id=order.contract_id, step="hold")


def _settle_refusal(order: SettleOrder, outcomes: Sequence[TransferOutcome]) -> EscrowError | None:
    step = order.settlement.kind
    return _refusal(outcomes, contract_id=order.contract_id, step=step)


def _refusal(
    outcomes: Sequence[TransferOutcome], *, contract_id: str, step: str
) -> EscrowError | None:
    refused = [outcome.result for outcome in outcomes if outcome.result is not TransferResult.OK]
    if not refused:
        return None
    # In a refused chain the failing leg has the cause; the others only say
    # that a linked leg failed.
    causes = [result for result in refused if result is not TransferResult.LINKED_EVENT_FAILED]
    cause = causes[0] if causes else refused[0]
    return EscrowError(f"the ledger refused the {step}", code=cause.value, contract_id=contract_id)
