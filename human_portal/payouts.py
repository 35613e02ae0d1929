"""Cash-out: an agent's credits become dollars on its human's Stripe Connect account.

1. The human connects a Connect account through Stripe's onboarding link.
2. ``request_cash_out`` checks the rules (not frozen, at least 100 credits,
   enough credits, at most 10,000 per agent per calendar month UTC; the
   portal's confirmation page shows ``cash_out_preview``, the same checks
   without holding anything) and,
   in the same transaction, records the payout and **holds** the credits (a
   pending ledger transfer to the issuance account). The agent's controls
   row is locked first, so concurrent requests queue and the month's sum
   cannot be overrun.
3. The Stripe transfer is made with the payout id as idempotency key.
4. On success the hold is **posted** with the dollar side (net to Stripe,
   fee to revenue); on a refusal it is **voided**; when the outcome is
   unknown (timeout, Stripe down) the payout stays pending and
   ``resume_pending_payouts`` retries with the same key, which Stripe
   answers with the first outcome, so a payout is never paid twice.
"""

from __future__ import annotations

import dataclasses
import enum
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from human_portal import limits
from human_portal.accounts import User
from human_portal.budgets import controls_by_agent, locked_controls
from human_portal.errors import (
    AgentFrozen,
    Conflict,
    InsufficientFunds,
    PaymentProviderFailed,
    PermissionDenied,
)
from human_portal.ledger_accounts import (
    ISSUANCE_ACCOUNT_ID,
    USD_CASH_OUT_FEES_ACCOUNT_ID,
    USD_CUSTOMER_FUNDS_ACCOUNT_ID,
    USD_STRIPE_ACCOUNT_ID,
    agent_account_id,
)
from human_portal.linking import owner_of
from human_portal.money_rules import CashOutQuote, cash_out_quote
from human_portal.portal_context import PortalContext
from human_portal.portal_tables import payouts, users
from wallet import (
    MILLICREDITS_PER_CREDIT,
    LedgerId,
    NewTransfer,
    TransferCode,
    TransferFlags,
    TransferResult,
)

__all__ = [
    "Payout",
    "PayoutStatus",
    "allow_agent_cash_out",
    "cash_out_preview",
    "cash_out_room",
    "connect_onboarding_url",
    "month_of",
    "payouts_of",
    "refresh_connect_status",
    "request_cash_out",
    "resume_pending_payouts",
]


class PayoutStatus(enum.StrEnum):
    PENDING = "pending"
    PAID = "paid"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class Payout:
    payout_id: str
    user_id: str
    agent_id: str
    month: str
    credits: int
    gross_cents: int
    fee_cents: int
    net_cents: int
    destination_account_id: str
    status: PayoutStatus
    requested_by: str
    stripe_transfer_id: str | None
    failure_reason: str | None
    created_at_ms: int


def month_of(now_ms: int, /) -> str:
    """The calendar month (UTC) a time falls in, e.g. '2026-11'."""
    return time.strftime("%Y-%m", time.gmtime(now_ms // 1000))


# --- Connect onboarding ----------------------------------------------------------


async def connect_onboarding_url(context: PortalContext, user: User, /) -> str:
    """Create the user's Connect account if needed, and a fresh onboarding link to it."""
    account_id = user.stripe_account_id
    if account_id is None:
        account_id = await context.connect.create_account(
            email=user.email, idempotency_key=f"connect:{user.user_id}"
        )

        async def store(connection: AsyncConnection) -> None:
            await connection.execute(
                users.update()
                .where(users.c.user_id == user.user_id, users.c.stripe_account_id.is_(None))
                .values(stripe_account_id=account_id)
            )

        await context.write(store)
    public_url = context.config.public_url
    return await context.connect.onboarding_link(
        account_id,
        refresh_url=f"{public_url}/payouts",
        return_url=f"{public_url}/payouts/connected",
    )


async def refresh_connect_status(context: PortalContext, user: User, /) -> bool:
    """Ask Stripe whether the user's account can receive payouts, and remember it."""
    if user.stripe_account_id is None:
        return False
    enabled = await context.connect.payouts_enabled(user.stripe_account_id)

    async def store(connection: AsyncConnection) -> None:
        await connection.execute(
            users.update()
            .where(users.c.user_id == user.user_id)
            .values(stripe_payouts_enabled=enabled)
        )

    await context.write(store)
    return enabled


# --- cash-out --------------------------------------------------------------------


async def request_cash_out(
    context: PortalContext,
    user: User,
    agent_id: str,
    credits: int,
    /,
    *,
    requested_by: str,
    payout_id: str | None = None,
) -> Payout:
    """Hold the credits, pay out through Stripe, then post or void the hold.

    With ``payout_id`` (an agent's request, named by its idempotency key) a
    payout that already exists is returned as it stands instead of repeated.
    """
    _check_connected(user)
    if requested_by == "agent" and not user.agent_cash_out_allowed:
        raise PermissionDenied("the agent's owner has not allowed it to cash out by itself")
    destination = user.stripe_account_id
    assert destination is not None
    now_ms = context.now_ms()
    payout_id = payout_id or "po_" + uuid.uuid4().hex
    month = month_of(now_ms)

    async def hold(connection: AsyncConnection) -> Payout | None:
        await owner_of(connection, user, agent_id)
        existing = await _payout_row(connection, payout_id)
        if existing is not None:
            if existing.agent_id != agent_id:
                raise Conflict("this request id names another agent's payout")
            return None
        controls = await locked_controls(connection, agent_id, now_ms)
        if controls.frozen:
            raise AgentFrozen(agent_id)
        quote = await _checked_quote(context, connection, agent_id, credits, month)
        payout = _new_payout(payout_id, user, agent_id, month, quote, destination, now_ms)
        payout = dataclasses.replace(payout, requested_by=requested_by)
        await connection.execute(payouts.insert().values(**_payout_values(payout)))
        [outcome] = await context.ledger.create_transfers(
            [_hold_transfer(payout)], connection=connection
        )
        if outcome.result is TransferResult.EXCEEDS_CREDITS:
            available = await _available(context, connection, agent_id)
            raise InsufficientFunds(
                available_millicredits=available, requested_millicredits=quote.millicredits
            )
        assert outcome.result is TransferResult.OK, outcome
        return payout

    payout = await context.write(hold)
    if payout is None:
        existing = await context.read(lambda connection: _payout_row(connection, payout_id))
        assert existing is not None
        return existing
    return await _pay(context, payout)


async def cash_out_preview(
    context: PortalContext, user: User, agent_id: str, credits: int, /
) -> CashOutQuote:
    """What a cash-out would pay, under every rule ``request_cash_out`` checks; holds nothing.

    The confirmation page shows it; the request itself checks again, under
    its locks, so a change in between is still refused.
    """
    _check_connected(user)
    month = month_of(context.now_ms())

    async def check(connection: AsyncConnection) -> CashOutQuote:
        await owner_of(connection, user, agent_id)
        controls = (await controls_by_agent(connection, [agent_id])).get(agent_id)
        if controls is not None and controls.frozen:
            raise AgentFrozen(agent_id)
        return await _checked_quote(context, connection, agent_id, credits, month)

    return await context.read(check)


def _check_connected(user: User) -> None:
    if user.stripe_account_id is None or not user.stripe_payouts_enabled:
        raise Conflict("connect a Stripe account that can receive payouts first")


async def _checked_quote(
    context: PortalContext, connection: AsyncConnection, agent_id: str, credits: int, month: str
) -> CashOutQuote:
    """The quote, refused in the order a person can act on: minimum, balance, month."""
    return cash_out_quote(
        credits,
        fees=await context.fee_schedule(connection),
        cashed_out_this_month=await _cashed_out(connection, agent_id, month),
        available_millicredits=await _available(context, connection, agent_id),
    )


async def allow_agent_cash_out(context: PortalContext, user: User, /, *, allowed: bool) -> None:
    """The standing permission for the user's agents to request cash-outs themselves."""

    async def work(connection: AsyncConnection) -> None:
        await connection.execute(
            users.update()
            .where(users.c.user_id == user.user_id)
            .values(agent_cash_out_allowed=allowed)
        )

    await context.write(work)


async def _payout_row(connection: AsyncConnection, payout_id: str) -> Payout | None:
    found = await connection.execute(sa.select(payouts).where(payouts.c.payout_id == payout_id))
    row = found.mappings().first()
    return _payout_from_row(dict(row)) if row is not None else None


async def _pay(context: PortalContext, payout: Payout) -> Payout:
    try:
        transfer_id = await context.connect.create_transfer(
            amount_cents=payout.net_cents,
            destination_account_id=payout.destination_account_id,
            idempotency_key=f"payout:{payout.payout_id}",
            metadata={"payout_id": payout.payout_id, "agent_id": payout.agent_id},
        )
    except PaymentProviderFailed as exc:
        if exc.retryable:
            # The outcome is unknown: the hold stays until a retry learns it.
            return payout
        return await _settle(context, payout, transfer_id=None, failure=exc.message)
    return await _settle(context, payout, transfer_id=transfer_id, failure=None)


async def _settle(
    context: PortalContext, payout: Payout, *, transfer_id: str | None, failure: str | None
) -> Payout:
    now_ms = context.now_ms()
    status = PayoutStatus.PAID if transfer_id is not None else PayoutStatus.FAILED
    transfers = _post_transfers(payout) if transfer_id is not None else [_void_transfer(payout)]

    async def work(connection: AsyncConnection) -> None:
        updated = await connection.execute(
            payouts.update()
            .where(
                payouts.c.payout_id == payout.payout_id,
                payouts.c.status == PayoutStatus.PENDING.value,
            )
            .values(
                status=status.value,
                stripe_transfer_id=transfer_id,
                failure_reason=failure[:500] if failure else None,
                resolved_at_ms=now_ms,
            )
        )
        if updated.rowcount != 1:
            return  # Another process settled it first.
        outcomes = await context.ledger.create_transfers(transfers, connection=connection)
        refused = [outcome for outcome in outcomes if outcome.result is not TransferResult.OK]
        assert not refused, f"the ledger refused to settle payout {payout.payout_id}: {refused}"

    await context.write(work)
    return _replace_status(payout, status, transfer_id, failure)


async def resume_pending_payouts(context: PortalContext, /, *, older_than_ms: int) -> int:
    """Retry the Stripe transfer of payouts left pending; returns how many it settled."""
    cutoff_ms = context.now_ms() - older_than_ms

    async def load(connection: AsyncConnection) -> list[Payout]:
        found = await connection.execute(
            sa.select(payouts)
            .where(
                payouts.c.status == PayoutStatus.PENDING.value,
                payouts.c.created_at_ms <= cutoff_ms,
            )
            .order_by(payouts.c.created_at_ms)
            .limit(limits.PAYOUT_RECOVERY_BATCH_MAX)
        )
        return [_payout_from_row(dict(row)) for row in found.mappings()]

    settled = 0
    for payout in await context.read(load):
        result = await _pay(context, payout)
        settled += result.status is not PayoutStatus.PENDING
    return settled


async def cash_out_room(connection: AsyncConnection, agent_id: str, now_ms: int, /) -> int:
    """Credits the agent may still cash out this month."""
    used = await _cashed_out(connection, agent_id, month_of(now_ms))
    return max(0, limits.CASH_OUT_CREDITS_PER_MONTH_MAX - used)


async def payouts_of(connection: AsyncConnection, user_id: str, /, *, limit: int) -> list[Payout]:
    found = await connection.execute(
        sa.select(payouts)
        .where(payouts.c.user_id == user_id)
        .order_by(payouts.c.created_at_ms.desc())
        .limit(limit)
    )
    return [_payout_from_row(dict(row)) for row in found.mappings()]


async def _cashed_out(connection: AsyncConnection, agent_id: str, month: str) -> int:
    """Credits held or paid out this month (failed payouts do not count)."""
    found = await connection.execute(
        sa.select(sa.func.coalesce(sa.func.sum(payouts.c.credits), 0)).where(
            payouts.c.agent_id == agent_id,
            payouts.c.month == month,
            payouts.c.status != PayoutStatus.FAILED.value,
        )
    )
    return int(found.scalar_one())


async def _available(context: PortalContext, connection: AsyncConnection, agent_id: str) -> int:
    account_id = agent_account_id(agent_id)
    balances = await context.ledger.lookup_accounts([account_id], connection=connection)
    wallet = balances.get(account_id)
    return wallet.available if wallet is not None else 0


# --- ledger transfers --------------------------------------------------------------


def _hold_transfer(payout: Payout) -> NewTransfer:
    return NewTransfer(
        id=f"payout:{payout.payout_id}:hold",
        debit_account_id=agent_account_id(payout.agent_id),
        credit_account_id=ISSUANCE_ACCOUNT_ID,
        amount=payout.credits * MILLICREDITS_PER_CREDIT,
        ledger=LedgerId.CREDITS,
        code=TransferCode.PAYOUT,
        flags=TransferFlags.PENDING,
        user_data=f"payout:{payout.payout_id}",
    )


def _post_transfers(payout: Payout) -> list[NewTransfer]:
    hold = _hold_transfer(payout)
    user_data = f"payout:{payout.payout_id}"
    chain = [
        NewTransfer(
            id=f"payout:{payout.payout_id}:post",
            debit_account_id=hold.debit_account_id,
            credit_account_id=hold.credit_account_id,
            amount=hold.amount,
            ledger=LedgerId.CREDITS,
            code=TransferCode.PAYOUT,
            flags=TransferFlags.POST_PENDING | TransferFlags.LINKED,
            pending_id=hold.id,
            user_data=user_data,
        ),
        NewTransfer(
            id=f"payout:{payout.payout_id}:usd_net",
            debit_account_id=USD_CUSTOMER_FUNDS_ACCOUNT_ID,
            credit_account_id=USD_STRIPE_ACCOUNT_ID,
            amount=payout.net_cents,
            ledger=LedgerId.USD_CENTS,
            code=TransferCode.PAYOUT,
            flags=TransferFlags.LINKED if payout.fee_cents > 0 else TransferFlags.NONE,
            user_data=user_data,
        ),
    ]
    if payout.fee_cents > 0:
        chain.append(
            NewTransfer(
                id=f"payout:{payout.payout_id}:usd_fee",
                debit_account_id=USD_CUSTOMER_FUNDS_ACCOUNT_ID,
                credit_account_id=USD_CASH_OUT_FEES_ACCOUNT_ID,
                amount=payout.fee_cents,
                ledger=LedgerId.USD_CENTS,
                code=TransferCode.FEE,
                user_data=user_data,
            )
        )
    return chain


def _void_transfer(payout: Payout) -> NewTransfer:
    hold = _hold_transfer(payout)
    return NewTransfer(
        id=f"payout:{payout.payout_id}:void",
        debit_account_id=hold.debit_account_id,
        credit_account_id=hold.credit_account_id,
        amount=hold.amount,
        ledger=LedgerId.CREDITS,
        code=TransferCode.PAYOUT,
        flags=TransferFlags.VOID_PENDING,
        pending_id=hold.id,
        user_data=f"payout:{payout.payout_id}",
    )


# --- rows ---------------------------------------------------------------------------


def _new_payout(
    payout_id: str,
    user: User,
    agent_id: str,
    month: str,
    quote: CashOutQuote,
    destination: str,
    now_ms: int,
) -> Payout:
    return Payout(
        payout_id=payout_id,
        user_id=user.user_id,
        agent_id=agent_id,
        month=month,
        credits=quote.credits,
        gross_cents=quote.gross_cents,
        fee_cents=quote.fee_cents,
        net_cents=quote.net_cents,
        destination_account_id=destination,
        status=PayoutStatus.PENDING,
        requested_by="human",
        stripe_transfer_id=None,
        failure_reason=None,
        created_at_ms=now_ms,
    )


def _replace_status(
    payout: Payout, status: PayoutStatus, transfer_id: str | None, failure: str | None
) -> Payout:
    return dataclasses.replace(
        payout, status=status, stripe_transfer_id=transfer_id, failure_reason=failure
    )


def _payout_values(payout: Payout) -> dict[str, Any]:
    return {
        "payout_id": payout.payout_id,
        "user_id": payout.user_id,
        "agent_id": payout.agent_id,
        "month": payout.month,
        "credits": payout.credits,
        "gross_cents": payout.gross_cents,
        "fee_cents": payout.fee_cents,
        "net_cents": payout.net_cents,
        "destination_account_id": payout.destination_account_id,
        "status": payout.status.value,
        "requested_by": payout.requested_by,
        "stripe_transfer_id": payout.stripe_transfer_id,
        "failure_reason": payout.failure_reason,
        "created_at_ms": payout.created_at_ms,
        "resolved_at_ms": None,
    }


def _payout_from_row(row: Mapping[str, Any]) -> Payout:
    return Payout(
        payout_id=str(row["payout_id"]),
        user_id=str(row["user_id"]),
        agent_id=str(row["agent_id"]),
        month=str(row["month"]),
        credits=int(row["credits"]),
        gross_cents=int(row["gross_cents"]),
        fee_cents=int(row["fee_cents"]),
        net_cents=int(row["net_cents"]),
        destination_account_id=str(row["destination_account_id"]),
        status=PayoutStatus(row["status"]),
        requested_by=str(row["requested_by"]),
        stripe_transfer_id=row["stripe_transfer_id"],
        failure_reason=row["failure_reason"],
        created_at_ms=int(row["created_at_ms"]),
    )
