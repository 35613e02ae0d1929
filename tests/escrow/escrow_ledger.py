"""The exchange's accounts in an in-memory ledger (the wallet's pure planner), for
the escrow tests: the buyer is funded, the provider and the platform start at zero."""

from __future__ import annotations

from escrow import ESCROW_ACCOUNT_ID, REVENUE_ACCOUNT_ID
from tests.wallet.memory_ledger import MemoryLedger
from wallet import (
    AccountCode,
    AccountFlags,
    LedgerId,
    NewAccount,
    NewTransfer,
    TransferCode,
    TransferResult,
)

BUYER = "agent:buyer"
PROVIDER = "agent:provider"
ISSUANCE = "platform:issuance"


def funded_ledger(funds_millicredits: int, /) -> MemoryLedger:
    """The issuance, escrow, revenue, buyer and provider accounts; the buyer minted ``funds``."""
    wallet = AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS
    ledger = MemoryLedger(
        [
            NewAccount(ISSUANCE, LedgerId.CREDITS, AccountCode.ISSUANCE, AccountFlags.NONE),
            NewAccount(ESCROW_ACCOUNT_ID, LedgerId.CREDITS, AccountCode.ESCROW, wallet),
            NewAccount(REVENUE_ACCOUNT_ID, LedgerId.CREDITS, AccountCode.PLATFORM_REVENUE, wallet),
            NewAccount(BUYER, LedgerId.CREDITS, AccountCode.AGENT_WALLET, wallet),
            NewAccount(PROVIDER, LedgerId.CREDITS, AccountCode.AGENT_WALLET, wallet),
        ]
    )
    mint = NewTransfer(
        "mint:buyer", ISSUANCE, BUYER, funds_millicredits, LedgerId.CREDITS, TransferCode.MINT
    )
    assert ledger.results([mint]) == [TransferResult.OK]
    return ledger
