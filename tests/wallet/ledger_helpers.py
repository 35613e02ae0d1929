"""Accounts, transfers and snapshots shared by the SQL ledger tests."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass

from wallet import (
    AccountBalance,
    AccountCode,
    AccountFlags,
    AccountResult,
    LedgerId,
    NewAccount,
    NewTransfer,
    SqlLedger,
    TransferCode,
    TransferFlags,
    TransferResult,
)
from wallet.ledger import wall_clock_us

# What the ``fresh_database`` fixture (tests/wallet/conftest.py) hands out:
# ``async with fresh_database() as url`` gives a new migrated database.
FreshDatabase = Callable[[], AbstractAsyncContextManager[str]]

ISSUANCE = "platform:issuance"
ESCROW = "platform:escrow"
REVENUE = "platform:revenue"
ALICE = "agent:alice"
BOB = "agent:bob"
CAROL = "agent:carol"

PLATFORM_ACCOUNTS = (
    NewAccount(ISSUANCE, LedgerId.CREDITS, AccountCode.ISSUANCE, AccountFlags.NONE),
    NewAccount(
        ESCROW, LedgerId.CREDITS, AccountCode.ESCROW, AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS
    ),
    NewAccount(
        REVENUE,
        LedgerId.CREDITS,
        AccountCode.PLATFORM_REVENUE,
        AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS,
    ),
)


def wallet_account(account_id: str, /) -> NewAccount:
    return NewAccount(
        account_id,
        LedgerId.CREDITS,
        AccountCode.AGENT_WALLET,
        AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS,
    )


async def open_accounts(ledger: SqlLedger, /, *agent_ids: str) -> None:
    """The platform accounts plus a wallet per agent."""
    accounts = [*PLATFORM_ACCOUNTS, *(wallet_account(agent_id) for agent_id in agent_ids)]
    outcomes = await ledger.create_accounts(accounts)
    assert [outcome.result for outcome in outcomes] == [AccountResult.OK] * len(accounts)


def mint(transfer_id: str, account_id: str, amount: int, /) -> NewTransfer:
    return NewTransfer(
        id=transfer_id,
        debit_account_id=ISSUANCE,
        credit_account_id=account_id,
        amount=amount,
        ledger=LedgerId.CREDITS,
        code=TransferCode.MINT,
    )


def payment(
    transfer_id: str,
    debit_account_id: str,
    credit_account_id: str,
    amount: int,
    /,
    *,
    flags: TransferFlags = TransferFlags.NONE,
    pending_id: str | None = None,
    timeout_s: int = 0,
    code: TransferCode = TransferCode.TRANSFER,
) -> NewTransfer:
    return NewTransfer(
        id=transfer_id,
        debit_account_id=debit_account_id,
        credit_account_id=credit_account_id,
        amount=amount,
        ledger=LedgerId.CREDITS,
        code=code,
        flags=flags,
        pending_id=pending_id,
        timeout_s=timeout_s,
    )


async def mint_into(ledger: SqlLedger, account_id: str, amount: int, /, *, key: str) -> None:
    [outcome] = await ledger.create_transfers([mint(f"mint:{key}", account_id, amount)])
    assert outcome.result is TransferResult.OK, outcome


async def balance_of(ledger: SqlLedger, account_id: str, /) -> AccountBalance:
    balances = await ledger.lookup_accounts([account_id])
    return balances[account_id]


@dataclass(frozen=True)
class Snapshot:
    """Everything a refused request must leave untouched."""

    balances: dict[str, AccountBalance]
    history_ids: dict[str, list[str]]


async def snapshot(ledger: SqlLedger, /, *account_ids: str) -> Snapshot:
    balances = await ledger.lookup_accounts(account_ids)
    history_ids = {
        account_id: [record.id for record in await ledger.account_transfers(account_id)]
        for account_id in account_ids
    }
    return Snapshot(balances, history_ids)


class ManualClock:
    """A clock for ``SqlLedger(clock_us=...)`` that tests move by hand."""

    def __init__(self) -> None:
        self.now_us = wall_clock_us()

    def __call__(self) -> int:
        return self.now_us

    def advance(self, seconds: int, /) -> None:
        self.now_us += seconds * 1_000_000
