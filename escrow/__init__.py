"""Escrow: the hold on a contract's price, and how it ends (release or refund).

The state machine and transfer plans are pure (:mod:`escrow.machine`); the
service applies them to the wallet ledger. It knows nothing of NATS or HTTP.
"""

from escrow.errors import EscrowError, EscrowTransitionError, InsufficientFunds
from escrow.machine import (
    ESCROW_ACCOUNT_ID,
    REVENUE_ACCOUNT_ID,
    EscrowEvent,
    EscrowState,
    Settlement,
    settlement_for,
    transition,
)
from escrow.service import Escrow, LedgerPort

__all__ = [
    "ESCROW_ACCOUNT_ID",
    "REVENUE_ACCOUNT_ID",
    "Escrow",
    "EscrowError",
    "EscrowEvent",
    "EscrowState",
    "EscrowTransitionError",
    "InsufficientFunds",
    "LedgerPort",
    "Settlement",
    "settlement_for",
    "transition",
]
