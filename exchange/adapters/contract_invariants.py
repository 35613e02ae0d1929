"""Invariants of the whole exchange: the ledger's, escrow against contracts and
metered sessions, subscriptions, digital goods, reputation.

Called at the end of every money-touching test, by ``agentx demo`` and by the
benchmarks. It raises :class:`wallet.InvariantViolation` listing every
problem found.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine

from escrow import ESCROW_ACCOUNT_ID
from exchange.adapters import (
    contract_store,
    goods_store,
    listing_store,
    metered_store,
    subscription_store,
)
from wallet import InvariantViolation, SqlLedger, check_invariants

__all__ = ["check_exchange_invariants"]


async def check_exchange_invariants(engine: AsyncEngine, /) -> None:
    await check_invariants(engine)
    problems: list[str] = []
    balances = await SqlLedger(engine).lookup_accounts([ESCROW_ACCOUNT_ID])
    escrow = balances.get(ESCROW_ACCOUNT_ID)
    async with engine.connect() as connection:
        open_total = await contract_store.open_escrow_total(connection)
        metered = await metered_store.metered_totals(connection)
        not_adding_up = await contract_store.settled_contracts_not_adding_up(connection)
        reputation_drift = await listing_store.reputation_drift(connection)
        # No subscription period is charged twice, nor charged without its row.
        subscription_problems = await subscription_store.subscription_problems(connection)
        # Each licence was paid its price, and each goods payment has its licence.
        goods = await goods_store.goods_payment_problems(connection)
    escrow_pending = escrow.credits_pending if escrow is not None else 0
    # A metered session holds its ceiling less what its claims captured.
    held_total = open_total + metered["held"]
    if escrow_pending != held_total:
        problems.append(
            f"escrow pending {escrow_pending} != open contracts {open_total}"
            f" + open metered sessions {metered['held']}"
        )
    if metered["claims_not_adding_up"]:
        problems.append(
            f"{metered['claims_not_adding_up']} metered sessions captured other than their claims"
        )
    if escrow is not None and escrow.credits_posted != escrow.debits_posted:
        problems.append(
            "escrow kept posted funds: released holds must be paid out in full "
            f"(credits {escrow.credits_posted}, debits {escrow.debits_posted})"
        )
    problems.extend(f"settled contract {cid}: net + fee + refund != price" for cid in not_adding_up)
    problems.extend(reputation_drift)
    problems.extend(subscription_problems)
    if goods["licences_not_paid"]:
        problems.append(f"{goods['licences_not_paid']} licences not paid their price in the ledger")
    if goods["payments_without_licence"]:
        problems.append(f"{goods['payments_without_licence']} goods payments without a licence")
    if problems:
        raise InvariantViolation(problems)
