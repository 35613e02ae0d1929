"""Which ledger accounts the exchange keeps, and how agents map onto them.

Each agent has one credits wallet, ``agent:<agent id>``, that may never be
overdrawn. The platform has an escrow account (holds in flight), a revenue
account (fees) and an issuance account, the source of every credit that
enters the system (operator mints now, Stripe top-ups later); the issuance
account's debit balance is therefore the total ever issued.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy.ext.asyncio import AsyncConnection

from escrow import ESCROW_ACCOUNT_ID, REVENUE_ACCOUNT_ID
from wallet import AccountCode, AccountFlags, LedgerId, NewAccount, SqlLedger

__all__ = [
    "ESCROW_ACCOUNT_ID",
    "ISSUANCE_ACCOUNT_ID",
    "REVENUE_ACCOUNT_ID",
    "agent_account_id",
    "ensure_agent_accounts",
    "ensure_platform_accounts",
]

ISSUANCE_ACCOUNT_ID = "platform:issuance"

_PLATFORM_ACCOUNTS = (
    NewAccount(
        id=ESCROW_ACCOUNT_ID,
        ledger=LedgerId.CREDITS,
        code=AccountCode.ESCROW,
        flags=AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS,
    ),
    NewAccount(
        id=REVENUE_ACCOUNT_ID,
        ledger=LedgerId.CREDITS,
        code=AccountCode.PLATFORM_REVENUE,
        flags=AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS,
    ),
    NewAccount(
        id=ISSUANCE_ACCOUNT_ID,
        ledger=LedgerId.CREDITS,
        code=AccountCode.ISSUANCE,
        flags=AccountFlags.NONE,
    ),
)


def agent_account_id(agent_id: str, /) -> str:
    return f"agent:{agent_id}"


async def ensure_platform_accounts(ledger: SqlLedger, /) -> None:
    await ledger.create_accounts(_PLATFORM_ACCOUNTS)


async def ensure_agent_accounts(
    ledger: SqlLedger, agent_ids: Iterable[str], /, *, connection: AsyncConnection
) -> None:
    """Create the agents' wallets if they do not exist yet (idempotent)."""
    accounts = [
        NewAccount(
            id=agent_account_id(agent_id),
            ledger=LedgerId.CREDITS,
            code=AccountCode.AGENT_WALLET,
            flags=AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS,
        )
        for agent_id in agent_ids
    ]
    await ledger.create_accounts(accounts, connection=connection)
