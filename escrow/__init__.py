"""Escrow: the hold on a contract's price, and how it ends (all, nothing or a split).

The settlement math and transfer plans are pure (:mod:`escrow.machine`); the
service applies them to the wallet ledger. It knows nothing of NATS or HTTP.
"""

from escrow.errors import EscrowError, InsufficientFunds
from escrow.machine import (
    ESCROW_ACCOUNT_ID,
    REVENUE_ACCOUNT_ID,
    MeteredCapture,
    Settlement,
    SettlementKind,
    provider_share_for_bps,
    settlement_for,
)
from escrow.service import Escrow, HoldOrder, LedgerPort, SettleOrder

__all__ = [
    "ESCROW_ACCOUNT_ID",
    "REVENUE_ACCOUNT_ID",
    "Escrow",
    "EscrowError",
    "HoldOrder",
    "InsufficientFunds",
    "LedgerPort",
    "MeteredCapture",
    "SettleOrder",
    "Settlement",
    "SettlementKind",
    "provider_share_for_bps",
    "settlement_for",
]
