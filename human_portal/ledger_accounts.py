"""The ledger accounts the portal moves money through, and its transfer ids.

Credits (millicredits) enter at the exchange's issuance account and leave
through it again: a top-up mints ``platform:issuance → agent:<id>``; a
clawback or a cash-out returns credits to it. Dollars (cents) live on the
wallet's separate USD ledger:

* ``usd:stripe``: the outside world (Stripe); its debit balance is the net
  money received from humans;
* ``usd:customer_funds``: what humans paid for credits still in circulation;
* ``usd:revenue:purchase_fees`` and ``usd:revenue:cash_out_fees``: revenue.

Every transfer id derives from a Stripe or portal id (``topup:<payment
intent>:mint``, ``payout:<payout id>:hold`` ...), so a retried step is the
same ledger request and happens once.
"""

from __future__ import annotations

from exchange.use_cases.exchange_accounts import (
    ISSUANCE_ACCOUNT_ID,
    REVENUE_ACCOUNT_ID,
    agent_account_id,
)
from wallet import AccountCode, AccountFlags, AccountResult, LedgerId, NewAccount, SqlLedger

__all__ = [
    "ISSUANCE_ACCOUNT_ID",
    "PORTAL_ACCOUNTS",
    "REVENUE_ACCOUNT_ID",
    "USD_CASH_OUT_FEES_ACCOUNT_ID",
    "USD_CUSTOMER_FUNDS_ACCOUNT_ID",
    "USD_PURCHASE_FEES_ACCOUNT_ID",
    "USD_STRIPE_ACCOUNT_ID",
    "agent_account_id",
    "ensure_portal_accounts",
]

USD_STRIPE_ACCOUNT_ID = "usd:stripe"
USD_CUSTOMER_FUNDS_ACCOUNT_ID = "usd:customer_funds"
USD_PURCHASE_FEES_ACCOUNT_ID = "usd:revenue:purchase_fees"
USD_CASH_OUT_FEES_ACCOUNT_ID = "usd:revenue:cash_out_fees"

PORTAL_ACCOUNTS = (
    # Like the credits' issuance account, the outside world has no limit.
    NewAccount(USD_STRIPE_ACCOUNT_ID, LedgerId.USD_CENTS, AccountCode.ISSUANCE, AccountFlags.NONE),
    # Not limited either: when a refund takes back dollars whose credits were
    # already spent, the platform carries the difference (a receivable).
    NewAccount(
        USD_CUSTOMER_FUNDS_ACCOUNT_ID, LedgerId.USD_CENTS, AccountCode.ESCROW, AccountFlags.NONE
    ),
    NewAccount(
        USD_PURCHASE_FEES_ACCOUNT_ID,
        LedgerId.USD_CENTS,
        AccountCode.PLATFORM_REVENUE,
        AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS,
    ),
    NewAccount(
        USD_CASH_OUT_FEES_ACCOUNT_ID,
        LedgerId.USD_CENTS,
        AccountCode.PLATFORM_REVENUE,
        AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS,
    ),
)


async def ensure_portal_accounts(ledger: SqlLedger, /) -> None:
    """Create the USD accounts if they do not exist yet (idempotent)."""
    outcomes = await ledger.create_accounts(PORTAL_ACCOUNTS)
    refused = [outcome for outcome in outcomes if outcome.result is not AccountResult.OK]
    assert not refused, f"the ledger holds other accounts under the portal's ids: {refused}"
