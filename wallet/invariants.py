"""Checking the stored ledger against its invariants.

``check_invariants`` is called at the end of every test that touches money,
across the whole project. It recomputes everything from the append-only
transfers, independently of the planner, and lists every problem it finds:

* per ledger, Σ debits == Σ credits over the accounts (pending and posted);
* every account's four totals equal the sums of its transfers: a pending
  transfer counts as pending until a post, void or expiry names it; a post
  counts as posted by the amount it posted; a plain transfer is posted;
* no account with ``DEBITS_MUST_NOT_EXCEED_CREDITS`` is overdrawn;
* every transfer is on its accounts' ledger;
* every pending transfer has a status row that matches its resolution, and
  every post or void resolves a pending transfer with its accounts and within
  its amount;
* no id is both applied and stored as a failure.

It reads whole tables: a tool for tests and audits, not for a request path.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import Row, and_, func, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from wallet.database import read_transaction, translated_errors
from wallet.errors import InvariantViolation
from wallet.ledger_tables import (
    ledger_accounts,
    ledger_failed_transfers,
    ledger_pending_transfers,
    ledger_transfers,
)
from wallet.model import AccountFlags, LedgerId, PendingStatus, TransferFlags
from wallet.validation import expiry_transfer_id

__all__ = ["LedgerTotals", "check_invariants", "ledger_totals"]

T = TypeVar("T")
_AnyRow = Row[*tuple[Any, ...]]

_accounts = ledger_accounts.c
_transfers = ledger_transfers.c
_pending = ledger_pending_transfers.c
_TOTALS = ("debits_pending", "debits_posted", "credits_pending", "credits_posted")
_PENDING = int(TransferFlags.PENDING)
_POST = int(TransferFlags.POST_PENDING)
_VOID = int(TransferFlags.VOID_PENDING)


@dataclass(frozen=True, slots=True)
class LedgerTotals:
    debits_pending: int
    debits_posted: int
    credits_pending: int
    credits_posted: int


async def ledger_totals(target: AsyncEngine | AsyncConnection, /) -> dict[LedgerId, LedgerTotals]:
    """The four totals summed over every account of each ledger."""

    async def work(connection: AsyncConnection) -> dict[LedgerId, LedgerTotals]:
        sums = [func.coalesce(func.sum(getattr(_accounts, name)), 0) for name in _TOTALS]
        query = select(_accounts.ledger, *sums).group_by(_accounts.ledger)
        return {
            LedgerId(row[0]): LedgerTotals(*(int(value) for value in row[1:]))
            for row in await connection.execute(query)
        }

    return await _run(target, work)


async def check_invariants(target: AsyncEngine | AsyncConnection, /) -> None:
    """Raise ``InvariantViolation`` listing every broken invariant, or return."""

    async def work(connection: AsyncConnection) -> list[str]:
        violations: list[str] = []
        accounts = [row for row in await connection.execute(select(ledger_accounts))]
        violations += _check_ledger_balance(accounts)
        violations += _check_overdrafts(accounts)
        violations += _check_totals(accounts, await _recomputed_totals(connection))
        violations += await _check_transfer_ledgers(connection)
        violations += await _check_holds(connection)
        violations += await _check_resolutions(connection)
        violations += await _check_failures(connection)
        return violations

    violations = await _run(target, work)
    if violations:
        raise InvariantViolation(violations)


async def _run(
    target: AsyncEngine | AsyncConnection, work: Callable[[AsyncConnection], Awaitable[T]]
) -> T:
    if isinstance(target, AsyncConnection):
        with translated_errors():
            return await work(target)
    async with read_transaction(target) as connection:
        return await work(connection)


def _check_ledger_balance(accounts: list[_AnyRow]) -> list[str]:
    sums: dict[int, list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    for account in accounts:
        for index, name in enumerate(_TOTALS):
            sums[account.ledger][index] += getattr(account, name)
    violations = []
    for ledger, (debits_pending, debits_posted, credits_pending, credits_posted) in sums.items():
        if debits_pending != credits_pending:
            violations.append(
                f"ledger {ledger}: debits_pending {debits_pending} != "
                f"credits_pending {credits_pending}"
            )
        if debits_posted != credits_posted:
            violations.append(
                f"ledger {ledger}: debits_posted {debits_posted} != credits_posted {credits_posted}"
            )
    return violations


def _check_overdrafts(accounts: list[_AnyRow]) -> list[str]:
    limited = int(AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS)
    return [
        f"account {account.id!r} is overdrawn: debits {account.debits_pending} pending + "
        f"{account.debits_posted} posted > credits_posted {account.credits_posted}"
        for account in accounts
        if account.flags & limited
        and account.debits_pending + account.debits_posted > account.credits_posted
    ] + [
        f"account {account.id!r} has a negative total"
        for account in accounts
        if min(getattr(account, name) for name in _TOTALS) < 0
    ]


async def _recomputed_totals(connection: AsyncConnection) -> dict[str, dict[str, int]]:
    """Each account's four totals, summed from the transfers alone."""
    resolver = ledger_transfers.alias("resolver")
    unresolved = ~select(resolver.c.id).where(resolver.c.pending_id == _transfers.id).exists()
    is_pending = _transfers.flags.bitwise_and(_PENDING) != 0
    is_posted = _transfers.flags.bitwise_and(_PENDING | _VOID) == 0
    totals: dict[str, dict[str, int]] = defaultdict(lambda: dict.fromkeys(_TOTALS, 0))
    sides = (
        ("debits", _transfers.debit_account_id),
        ("credits", _transfers.credit_account_id),
    )
    for side, account_column in sides:
        for kind, condition in (("pending", and_(is_pending, unresolved)), ("posted", is_posted)):
            query = (
                select(account_column, func.sum(_transfers.amount))
                .where(condition)
                .group_by(account_column)
            )
            for account_id, amount in await connection.execute(query):
                totals[account_id][f"{side}_{kind}"] = int(amount)
    return totals


def _check_totals(accounts: list[_AnyRow], recomputed: dict[str, dict[str, int]]) -> list[str]:
    violations = []
    for account in accounts:
        expected = recomputed.get(account.id, dict.fromkeys(_TOTALS, 0))
        for name in _TOTALS:
            if getattr(account, name) != expected[name]:
                violations.append(
                    f"account {account.id!r}: {name} is {getattr(account, name)}, "
                    f"its transfers sum to {expected[name]}"
                )
    known = {account.id for account in accounts}
    violations += [f"transfers name a missing account {i!r}" for i in recomputed if i not in known]
    return violations


async def _check_transfer_ledgers(connection: AsyncConnection) -> list[str]:
    debit = ledger_accounts.alias("debit")
    credit = ledger_accounts.alias("credit")
    query = (
        select(_transfers.id)
        .join(debit, debit.c.id == _transfers.debit_account_id)
        .join(credit, credit.c.id == _transfers.credit_account_id)
        .where((debit.c.ledger != _transfers.ledger) | (credit.c.ledger != _transfers.ledger))
    )
    return [
        f"transfer {transfer_id!r} is not on its accounts' ledger"
        for (transfer_id,) in await connection.execute(query)
    ]


async def _check_holds(connection: AsyncConnection) -> list[str]:
    """Every pending transfer has a status row that matches its resolution."""
    resolver = ledger_transfers.alias("resolver")
    query = (
        select(
            _transfers.id,
            _transfers.timestamp_us,
            _transfers.timeout_s,
            _pending.status,
            _pending.expires_at_us,
            resolver.c.id.label("resolver_id"),
            resolver.c.flags.label("resolver_flags"),
        )
        .select_from(ledger_transfers)
        .outerjoin(ledger_pending_transfers, _pending.id == _transfers.id)
        .outerjoin(resolver, resolver.c.pending_id == _transfers.id)
        .where(_transfers.flags.bitwise_and(_PENDING) != 0)
    )
    violations = []
    for row in await connection.execute(query):
        violations += _check_hold(row)
    orphans = (
        select(_pending.id)
        .outerjoin(ledger_transfers, _transfers.id == _pending.id)
        .where((_transfers.id.is_(None)) | (_transfers.flags.bitwise_and(_PENDING) == 0))
    )
    violations += [
        f"status row {hold_id!r} names no pending transfer"
        for (hold_id,) in await connection.execute(orphans)
    ]
    return violations


def _check_hold(row: _AnyRow) -> list[str]:
    if row.status is None:
        return [f"pending transfer {row.id!r} has no status row"]
    violations = []
    expires_at_us = row.timestamp_us + row.timeout_s * 1_000_000 if row.timeout_s else None
    if row.expires_at_us != expires_at_us:
        violations.append(f"pending transfer {row.id!r}: deadline {row.expires_at_us} is wrong")
    if row.resolver_id is None:
        expected = PendingStatus.PENDING
    elif row.resolver_flags & _POST:
        expected = PendingStatus.POSTED
    elif row.resolver_id == expiry_transfer_id(row.id):
        expected = PendingStatus.EXPIRED
    else:
        expected = PendingStatus.VOIDED
    if row.status != expected.value:
        violations.append(
            f"pending transfer {row.id!r} is {row.status!r}, "
            f"but its transfers say {expected.value!r}"
        )
    return violations


async def _check_resolutions(connection: AsyncConnection) -> list[str]:
    """Every post or void names a pending transfer, with its accounts, within its amount."""
    pending = ledger_transfers.alias("pending")
    query = (
        select(
            _transfers.id,
            _transfers.flags,
            _transfers.amount,
            _transfers.debit_account_id,
            _transfers.credit_account_id,
            pending.c.flags.label("pending_flags"),
            pending.c.amount.label("pending_amount"),
            pending.c.debit_account_id.label("pending_debit_account_id"),
            pending.c.credit_account_id.label("pending_credit_account_id"),
        )
        .outerjoin(pending, pending.c.id == _transfers.pending_id)
        .where(_transfers.flags.bitwise_and(_POST | _VOID) != 0)
    )
    violations = []
    for row in await connection.execute(query):
        if row.pending_flags is None or not row.pending_flags & _PENDING:
            violations.append(f"transfer {row.id!r} resolves no pending transfer")
            continue
        same_accounts = (row.debit_account_id, row.credit_account_id) == (
            row.pending_debit_account_id,
            row.pending_credit_account_id,
        )
        within = row.amount <= row.pending_amount if row.flags & _POST else True
        exact = row.amount == row.pending_amount if row.flags & _VOID else True
        if not (same_accounts and within and exact):
            violations.append(f"transfer {row.id!r} does not match its pending transfer")
    return violations


async def _check_failures(connection: AsyncConnection) -> list[str]:
    query = select(ledger_failed_transfers.c.id).join(
        ledger_transfers, _transfers.id == ledger_failed_transfers.c.id
    )
    return [
        f"id {failed_id!r} is both applied and stored as failed"
        for (failed_id,) in await connection.execute(query)
    ]
