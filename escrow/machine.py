"""The escrow state machine and the ledger transfers of each step (pure).

A hold is a **pending** ledger transfer from the buyer's wallet to the
platform escrow account. It ends exactly once, with a :class:`Settlement`
that gives the provider a share of the price (all of it, none, or a split):

* the provider's share is posted, and in the same linked chain the escrow
  account pays the provider ``share - fee`` and the platform ``fee``; the
  unposted rest of the hold returns to the buyer;
* a share of zero voids the hold: the buyer's funds are free again.

Every transfer id derives from the contract id, so a retried step is the same
ledger request and the ledger's idempotency makes it happen once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from wallet import LedgerId, NewTransfer, TransferCode, TransferFlags, fee_split

__all__ = [
    "ESCROW_ACCOUNT_ID",
    "REVENUE_ACCOUNT_ID",
    "MeteredCapture",
    "Settlement",
    "SettlementKind",
    "hold_transfers",
    "metered_hold_transfers",
    "metered_release_transfers",
    "provider_share_for_bps",
    "settle_transfers",
    "settlement_for",
]

ESCROW_ACCOUNT_ID = "platform:escrow"
REVENUE_ACCOUNT_ID = "platform:revenue"


# How a settlement divides the price, in words for messages: the provider got
# the whole price (minus the fee), the buyer got it all back, or each a part.
# The contract's state after it is the wire's ContractState, not this.
SettlementKind = Literal["released", "refunded", "split"]


@dataclass(frozen=True, slots=True)
class Settlement:
    """How a held price ends: the provider's share (less the fee), the rest refunded."""

    price_millicredits: int
    provider_share_millicredits: int
    fee_millicredits: int
    net_millicredits: int
    refunded_millicredits: int

    def __post_init__(self) -> None:
        assert 0 <= self.provider_share_millicredits <= self.price_millicredits
        assert self.fee_millicredits >= 0 and self.net_millicredits >= 0
        assert self.fee_millicredits + self.net_millicredits == self.provider_share_millicredits
        assert (
            self.provider_share_millicredits + self.refunded_millicredits == self.price_millicredits
        )

    @property
    def kind(self) -> SettlementKind:
        if self.provider_share_millicredits == self.price_millicredits:
            return "released"
        if self.provider_share_millicredits == 0:
            return "refunded"
        return "split"


def settlement_for(
    price_millicredits: int, /, *, provider_share_millicredits: int, fee_rate_bps: int
) -> Settlement:
    """The one place a settlement is computed: the fee applies to the provider's share."""
    assert 0 <= provider_share_millicredits <= price_millicredits
    fee, net = fee_split(provider_share_millicredits, rate_bps=fee_rate_bps)
    return Settlement(
        price_millicredits,
        provider_share_millicredits,
        fee,
        net,
        price_millicredits - provider_share_millicredits,
    )


def provider_share_for_bps(price_millicredits: int, /, *, provider_share_bps: int) -> int:
    """A split given in basis points of the price, rounded down (never over the price)."""
    assert 0 <= provider_share_bps <= 10_000
    return price_millicredits * provider_share_bps // 10_000


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


def settle_transfers(
    contract_id: str,
    /,
    *,
    buyer_account_id: str,
    provider_account_id: str,
    settlement: Settlement,
) -> list[NewTransfer]:
    """The transfers that end a hold, as one linked (all-or-nothing) chain.

    Nothing for the provider voids the hold. Otherwise the hold is posted for
    the provider's share only (the ledger releases the rest of a partially
    posted pending transfer back to the buyer), and the escrow account pays
    the share out: net to the provider, fee to the platform.
    """
    hold_id = _transfer_id(contract_id, "hold")
    if settlement.provider_share_millicredits == 0:
        return [
            NewTransfer(
                id=_transfer_id(contract_id, "void"),
                debit_account_id=buyer_account_id,
                credit_account_id=ESCROW_ACCOUNT_ID,
                amount=settlement.price_millicredits,
                ledger=LedgerId.CREDITS,
                code=TransferCode.ESCROW_REFUND,
                flags=TransferFlags.VOID_PENDING,
                pending_id=hold_id,
                user_data=contract_id,
            )
        ]
    steps = [
        ("post", buyer_account_id, ESCROW_ACCOUNT_ID, settlement.provider_share_millicredits),
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
                code=TransferCode.FEE if step == "fee" else TransferCode.ESCROW_RELEASE,
                flags=flags,
                pending_id=hold_id if is_post else None,
                user_data=contract_id,
            )
        )
    return chain


# --- metered sessions ----------------------------------------------------------------
#
# A metered session holds a ceiling; each capture posts part of the current
# hold (the ledger releases the rest to the buyer) and, in the same linked
# chain, holds that rest again and pays the capture out. So the pending hold
# always equals the ceiling less what was captured, and every capture is one
# atomic chain whose ids derive from the session and its hold's sequence.


def _metered_id(contract_id: str, step: str, sequence: int) -> str:
    return f"metered:{contract_id}:{step}:{sequence}"


def metered_hold_transfers(
    contract_id: str, /, *, buyer_account_id: str, ceiling_millicredits: int
) -> list[NewTransfer]:
    assert ceiling_millicredits > 0
    return [
        NewTransfer(
            id=_metered_id(contract_id, "hold", 0),
            debit_account_id=buyer_account_id,
            credit_account_id=ESCROW_ACCOUNT_ID,
            amount=ceiling_millicredits,
            ledger=LedgerId.CREDITS,
            code=TransferCode.ESCROW_LOCK,
            flags=TransferFlags.PENDING,
            user_data=contract_id,
        )
    ]


@dataclass(frozen=True, slots=True)
class MeteredCapture:
    """One capture from a session's current hold (number ``hold_sequence``)."""

    contract_id: str
    buyer_account_id: str
    provider_account_id: str
    hold_sequence: int
    held_millicredits: int
    capture_millicredits: int
    fee_millicredits: int
    net_millicredits: int

    def __post_init__(self) -> None:
        assert 0 < self.capture_millicredits <= self.held_millicredits
        assert self.fee_millicredits + self.net_millicredits == self.capture_millicredits
        assert self.fee_millicredits >= 0 and self.net_millicredits >= 0

    def transfers(self) -> list[NewTransfer]:
        sequence, contract_id = self.hold_sequence, self.contract_id
        rest = self.held_millicredits - self.capture_millicredits
        steps = [
            ("post", self.buyer_account_id, ESCROW_ACCOUNT_ID, self.capture_millicredits),
            ("hold", self.buyer_account_id, ESCROW_ACCOUNT_ID, rest),
            ("net", ESCROW_ACCOUNT_ID, self.provider_account_id, self.net_millicredits),
            ("fee", ESCROW_ACCOUNT_ID, REVENUE_ACCOUNT_ID, self.fee_millicredits),
        ]
        steps = [step for step in steps if step[3] > 0]
        codes = {
            "post": TransferCode.ESCROW_RELEASE,
            "hold": TransferCode.ESCROW_LOCK,
            "net": TransferCode.ESCROW_RELEASE,
            "fee": TransferCode.FEE,
        }
        flags = {
            "post": TransferFlags.POST_PENDING,
            "hold": TransferFlags.PENDING,
            "net": TransferFlags.NONE,
            "fee": TransferFlags.NONE,
        }
        chain = []
        for index, (step, debit_account_id, credit_account_id, amount) in enumerate(steps):
            linked = TransferFlags.LINKED if index < len(steps) - 1 else TransferFlags.NONE
            chain.append(
                NewTransfer(
                    # The new hold is the next in sequence; the rest belong to this one.
                    id=_metered_id(contract_id, step, sequence + (step == "hold")),
                    debit_account_id=debit_account_id,
                    credit_account_id=credit_account_id,
                    amount=amount,
                    ledger=LedgerId.CREDITS,
                    code=codes[step],
                    flags=flags[step] | linked,
                    pending_id=_metered_id(contract_id, "hold", sequence)
                    if step == "post"
                    else None,
                    user_data=contract_id,
                )
            )
        return chain


def metered_release_transfers(
    contract_id: str,
    /,
    *,
    buyer_account_id: str,
    hold_sequence: int,
    held_millicredits: int,
) -> list[NewTransfer]:
    """Void the session's current hold: what was not captured returns to the buyer."""
    if held_millicredits == 0:
        return []
    return [
        NewTransfer(
            id=_metered_id(contract_id, "void", hold_sequence),
            debit_account_id=buyer_account_id,
            credit_account_id=ESCROW_ACCOUNT_ID,
            amount=held_millicredits,
            ledger=LedgerId.CREDITS,
            code=TransferCode.ESCROW_REFUND,
            flags=TransferFlags.VOID_PENDING,
            pending_id=_metered_id(contract_id, "hold", hold_sequence),
            user_data=contract_id,
        )
    ]
