"""The escrow state machine and the ledger transfers of each step (pure).

A hold is a **pending** ledger transfer from the buyer's wallet to the
platform escrow account. It ends exactly once:

* ``release``: the pending transfer is posted, and in the same linked chain
  the escrow account pays the provider ``price - fee`` and the platform
  revenue account ``fee``;
* ``refund``: the pending transfer is voided and the buyer's funds are free.

Every transfer id derives from the contract id, so a retried step is the same
ledger request and the ledger's idempotency makes it happen once.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from escrow.errors import EscrowTransitionError
from wallet import LedgerId, NewTransfer, TransferCode, TransferFlags, fee_split

__all__ = [
    "ESCROW_ACCOUNT_ID",
    "REVENUE_ACCOUNT_ID",
    "EscrowEvent",
    "EscrowState",
    "Settlement",
    "hold_transfers",
    "refund_transfers",
    "release_transfers",
    "settlement_for",
    "transition",
]

ESCROW_ACCOUNT_ID = "platform:escrow"
REVENUE_ACCOUNT_ID = "platform:revenue"


class EscrowState(enum.Enum):
    HELD = "held"
    RELEASED = "released"
    REFUNDED = "refunded"


class EscrowEvent(enum.Enum):
    RELEASE = "release"
    REFUND = "refund"


_TRANSITIONS: dict[tuple[EscrowState, EscrowEvent], EscrowState] = {
    (EscrowState.HELD, EscrowEvent.RELEASE): EscrowState.RELEASED,
    (EscrowState.HELD, EscrowEvent.REFUND): EscrowState.REFUNDED,
}


def transition(state: EscrowState, event: EscrowEvent, /, *, contract_id: str) -> EscrowState:
    """The state after ``event``; a hold that has ended cannot change again."""
    next_state = _TRANSITIONS.get((state, event))
    if next_state is None:
        raise EscrowTransitionError(
            f"cannot {event.value} a hold that is {state.value}",
            code="invalid_state",
            contract_id=contract_id,
        )
    return next_state


@dataclass(frozen=True, slots=True)
class Settlement:
    price_millicredits: int
    fee_millicredits: int
    net_millicredits: int

    def __post_init__(self) -> None:
        assert self.fee_millicredits >= 0 and self.net_millicredits >= 0
        assert self.fee_millicredits + self.net_millicredits == self.price_millicredits


def settlement_for(price_millicredits: int, /, *, fee_rate_bps: int) -> Settlement:
    fee, net = fee_split(price_millicredits, rate_bps=fee_rate_bps)
    return Settlement(price_millicredits, fee, net)


def _transfer_id(contract_id: str, step: str) -> str:
    return f"escrow:{contract_id}:{step}"


def hold_transfers(
    contract_id: str, /, *, buyer_account_id: str, price_millicredits: int
) -> list[NewTransfer]:
    assert price_millicredits > 0
    return [
        NewTransfer(
            id=_transfer_id(contract_id, "hold"),
            debit_account_id=buyer_account_id,
            credit_account_id=ESCROW_ACCOUNT_ID,
            amount=price_millicredits,
            ledger=LedgerId.CREDITS,
            code=TransferCode.ESCROW_LOCK,
            flags=TransferFlags.PENDING,
            user_data=contract_id,
        )
    ]


def release_transfers(
    contract_id: str,
    /,
    *,
    buyer_account_id: str,
    provider_account_id: str,
    settlement: Settlement,
) -> list[NewTransfer]:
    """Post the hold and pay it out, as one linked (all-or-nothing) chain."""
    steps = [
        ("post", buyer_account_id, ESCROW_ACCOUNT_ID, settlement.price_millicredits),
        ("net", ESCROW_ACCOUNT_ID, provider_account_id, settlement.net_millicredits),
        ("fee", ESCROW_ACCOUNT_ID, REVENUE_ACCOUNT_ID, settlement.fee_millicredits),
    ]
    # The ledger refuses zero amounts; a zero fee or net simply has no transfer.
    steps = [step for step in steps if step[3] > 0]
    chain: list[NewTransfer] = []
    for index, (step, debit_account_id, credit_account_id, amount) in enumerate(steps):
        is_post = step == "post"
        flags = TransferFlags.POST_PENDING if is_post else TransferFlags.NONE
        if index < len(steps) - 1:
            flags |= TransferFlags.LINKED
        chain.append(
            NewTransfer(
                id=_transfer_id(contract_id, step),
                debit_account_id=debit_account_id,
                credit_account_id=credit_account_id,
                amount=amount,
                ledger=LedgerId.CREDITS,
                code=_RELEASE_CODES[step],
                flags=flags,
                pending_id=_transfer_id(contract_id, "hold") if is_post else None,
                user_data=contract_id,
            )
        )
    return chain


_RELEASE_CODES = {
    "post": TransferCode.ESCROW_RELEASE,
    "net": TransferCode.ESCROW_RELEASE,
    "fee": TransferCode.FEE,
}


def refund_transfers(
    contract_id: str, /, *, buyer_account_id: str, price_millicredits: int
) -> list[NewTransfer]:
    return [
        NewTransfer(
            id=_transfer_id(contract_id, "void"),
            debit_account_id=buyer_account_id,
            credit_account_id=ESCROW_ACCOUNT_ID,
            amount=price_millicredits,
            ledger=LedgerId.CREDITS,
            code=TransferCode.ESCROW_REFUND,
            flags=TransferFlags.VOID_PENDING,
            pending_id=_transfer_id(contract_id, "hold"),
            user_data=contract_id,
        )
    ]
