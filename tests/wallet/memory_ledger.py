"""An in-memory ledger that applies the pure planner's plans to plain dicts.

It does what ``SqlLedger`` does with tables (load everything, plan, write),
so that the core can be tested, and property-tested, without a database.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from wallet import (
    AccountBalance,
    AccountCode,
    AccountFlags,
    LedgerId,
    NewAccount,
    NewTransfer,
    PendingStatus,
    TransferFlags,
    TransferRecord,
    TransferResult,
)
from wallet.core import BatchPlan, PendingHold, StoredOutcome, plan_batch, plan_batches
from wallet.validation import transfer_fingerprint

START_US = 1_700_000_000_000_000
ISSUANCE = "platform:issuance"
ALICE = "agent:alice"
BOB = "agent:bob"
CAROL = "agent:carol"
DOLLARS = "platform:usd"


def wallet(account_id: str, /, *, ledger: LedgerId = LedgerId.CREDITS) -> NewAccount:
    return NewAccount(
        account_id, ledger, AccountCode.AGENT_WALLET, AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS
    )


STANDARD_ACCOUNTS = (
    NewAccount(ISSUANCE, LedgerId.CREDITS, AccountCode.ISSUANCE, AccountFlags.NONE),
    wallet(ALICE),
    wallet(BOB),
    wallet(CAROL),
    NewAccount(DOLLARS, LedgerId.USD_CENTS, AccountCode.ISSUANCE, AccountFlags.NONE),
)


class MemoryLedger:
    def __init__(self, accounts: Sequence[NewAccount] = STANDARD_ACCOUNTS) -> None:
        self.accounts = {
            account.id: AccountBalance(
                account.id, account.ledger, account.code, account.flags, 0, 0, 0, 0
            )
            for account in accounts
        }
        self.holds: dict[str, PendingHold] = {}
        self.outcomes: dict[str, StoredOutcome] = {}
        self.records: list[TransferRecord] = []
        self.now_us = START_US

    def submit(self, transfers: Sequence[NewTransfer], /) -> BatchPlan:
        last_timestamp_us = self.records[-1].timestamp_us if self.records else 0
        plan = plan_batch(
            transfers,
            accounts=self.accounts,
            holds=self.holds,
            existing=self.outcomes,
            now_us=self.now_us,
            last_timestamp_us=last_timestamp_us,
        )
        self.apply(plan)
        return plan

    def submit_group(self, batches: Sequence[Sequence[NewTransfer]], /) -> BatchPlan:
        """Several batches in one plan, as the batching writer applies them."""
        last_timestamp_us = self.records[-1].timestamp_us if self.records else 0
        plan = plan_batches(
            batches,
            accounts=self.accounts,
            holds=self.holds,
            existing=self.outcomes,
            now_us=self.now_us,
            last_timestamp_us=last_timestamp_us,
        )
        self.apply(plan)
        return plan

    def results(self, transfers: Sequence[NewTransfer], /) -> list[TransferResult]:
        return [outcome.result for outcome in self.submit(transfers).outcomes]

    def apply(self, plan: BatchPlan, /) -> None:
        for account_id, delta in plan.account_deltas.items():
            account = self.accounts[account_id]
            self.accounts[account_id] = replace(
                account,
                debits_pending=account.debits_pending + delta.debits_pending,
                debits_posted=account.debits_posted + delta.debits_posted,
                credits_pending=account.credits_pending + delta.credits_pending,
                credits_posted=account.credits_posted + delta.credits_posted,
            )
        for hold in plan.holds_created:
            assert hold.id not in self.holds
            self.holds[hold.id] = hold
        for hold_id, status in plan.holds_resolved.items():
            self.holds[hold_id] = replace(self.holds[hold_id], status=status)
        for record in plan.records:
            assert record.id not in self.outcomes
            fingerprint = transfer_fingerprint(record.as_new_transfer())
            self.outcomes[record.id] = StoredOutcome(
                TransferResult.OK, fingerprint, record.timestamp_us
            )
            self.records.append(record)
        for failure in plan.failures:
            assert failure.id not in self.outcomes
            self.outcomes[failure.id] = StoredOutcome(
                failure.result, failure.fingerprint, failure.timestamp_us
            )

    def recomputed_totals(self) -> dict[str, tuple[int, int, int, int]]:
        """(debits_pending, debits_posted, credits_pending, credits_posted) from records."""
        totals = {account_id: [0, 0, 0, 0] for account_id in self.accounts}
        for record in self.records:
            if record.flags & TransferFlags.PENDING:
                if self.holds[record.id].status is PendingStatus.PENDING:
                    totals[record.debit_account_id][0] += record.amount
                    totals[record.credit_account_id][2] += record.amount
            elif not record.flags & TransferFlags.VOID_PENDING:
                totals[record.debit_account_id][1] += record.amount
                totals[record.credit_account_id][3] += record.amount
        return {account_id: (a, b, c, d) for account_id, (a, b, c, d) in totals.items()}

    def stored_totals(self) -> dict[str, tuple[int, int, int, int]]:
        return {
            account.id: (
                account.debits_pending,
                account.debits_posted,
                account.credits_pending,
                account.credits_posted,
            )
            for account in self.accounts.values()
        }
