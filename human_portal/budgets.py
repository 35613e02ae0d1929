"""The humans' spending controls, enforced by the exchange when a contract opens.

A human sets, per linked agent, a daily limit and a per-contract limit (in
millicredits), an approval threshold and a freeze switch; an operator can
freeze an agent too. ``enforce_spending_controls`` runs inside the
exchange's open-contract transaction, before the escrow hold, so the check
and the hold are atomic: it locks the agent's controls row (PostgreSQL
``FOR UPDATE``; SQLite's ``BEGIN IMMEDIATE`` already serialises writers),
so two contracts opening at once cannot both fit under one limit.

"Spent today" counts every escrow hold the agent made since midnight UTC
that is still pending (held) or was posted (by its posted amount); voided or
expired holds count nothing. It is read from the ledger through the
wallet's API, so it agrees with the money whatever the contract tables hold.

A contract above the approval threshold is refused with
``pending_approval`` and recorded for the human, who approves or rejects it
in the portal; the agent then retries the same acceptance (the contract id
derives from the quote, so the approval covers exactly that quote).

This module is imported by the exchange and so imports nothing from
``exchange`` (nor the portal's web or Stripe modules).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from agent_client.protocol import ErrorCode
from human_portal import limits
from human_portal.schema import agent_controls, approvals
from wallet import SqlLedger, TransferCode, TransferFlags, run_transaction

__all__ = [
    "ApprovalStatus",
    "Controls",
    "SpendingRefused",
    "SpendingRequest",
    "controls_by_agent",
    "enforce_spending_controls",
    "locked_controls",
    "record_refusal",
    "refuse_if_frozen",
    "set_operator_freeze",
    "spending_refusal",
    "spent_since_us",
    "start_of_day_ms",
]

_MILLISECONDS_PER_DAY = 24 * 3600 * 1000


class ApprovalStatus(enum.StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"


@dataclass(frozen=True, slots=True)
class Controls:
    agent_id: str
    daily_limit_millicredits: int | None
    contract_limit_millicredits: int | None
    approval_threshold_millicredits: int | None
    frozen_by_owner: bool
    frozen_by_operator: bool
    operator_freeze_reason: str

    @property
    def frozen(self) -> bool:
        return self.frozen_by_owner or self.frozen_by_operator


class _ContractLike(Protocol):
    @property
    def contract_id(self) -> str: ...
    @property
    def buyer_id(self) -> str: ...
    @property
    def provider_id(self) -> str: ...
    @property
    def capability(self) -> str: ...
    @property
    def price_millicredits(self) -> int: ...
    @property
    def created_at_ms(self) -> int: ...


@dataclass(frozen=True, slots=True)
class SpendingRequest:
    """A contract about to open, as the controls see it."""

    contract_id: str
    buyer_id: str
    buyer_account_id: str
    provider_id: str
    capability: str
    price_millicredits: int
    now_ms: int
    # An approval is asked for until the quote itself expires.
    expires_at_ms: int

    @classmethod
    def for_contract(
        cls, contract: _ContractLike, /, *, buyer_account_id: str, quote_expires_at_ms: int
    ) -> SpendingRequest:
        return cls(
            contract_id=contract.contract_id,
            buyer_id=contract.buyer_id,
            buyer_account_id=buyer_account_id,
            provider_id=contract.provider_id,
            capability=contract.capability,
            price_millicredits=contract.price_millicredits,
            now_ms=contract.created_at_ms,
            expires_at_ms=min(
                quote_expires_at_ms, contract.created_at_ms + limits.APPROVAL_LIFETIME_MAX_S * 1000
            ),
        )


class SpendingRefused(Exception):
    """The controls refuse the contract; ``code`` is the wire's error code.

    Raised inside the exchange's transaction, which then rolls back; with
    ``approval`` set, the caller records the request with ``record_refusal``.
    """

    def __init__(
        self, code: ErrorCode, message: str, /, *, approval: SpendingRequest | None = None
    ) -> None:
        super().__init__(f"{code.value}: {message}")
        self.code = code
        self.message = message
        self.approval = approval


def start_of_day_ms(now_ms: int, /) -> int:
    """Midnight UTC of the day ``now_ms`` falls in."""
    return now_ms - now_ms % _MILLISECONDS_PER_DAY


def spending_refusal(
    controls: Controls,
    request: SpendingRequest,
    /,
    *,
    spent_today_millicredits: int,
    approval_status: ApprovalStatus | None,
) -> SpendingRefused | None:
    """Why the controls refuse this contract, or None (pure)."""
    price = request.price_millicredits
    if controls.frozen:
        who = "its owner" if controls.frozen_by_owner else "an operator"
        return SpendingRefused(ErrorCode.AGENT_FROZEN, f"the agent's spending is frozen by {who}")
    contract_limit = controls.contract_limit_millicredits
    if contract_limit is not None and price > contract_limit:
        return SpendingRefused(
            ErrorCode.BUDGET_EXCEEDED,
            f"the price {price} is over the per-contract limit of {contract_limit} millicredits",
        )
    daily_limit = controls.daily_limit_millicredits
    if daily_limit is not None and spent_today_millicredits + price > daily_limit:
        return SpendingRefused(
            ErrorCode.BUDGET_EXCEEDED,
            f"over the daily limit: {spent_today_millicredits} of {daily_limit} millicredits "
            f"spent today, the price is {price}",
        )
    threshold = controls.approval_threshold_millicredits
    if threshold is None or price <= threshold or approval_status is ApprovalStatus.APPROVED:
        return None
    if approval_status is ApprovalStatus.REJECTED:
        return SpendingRefused(
            ErrorCode.APPROVAL_REJECTED, "the agent's owner rejected this contract"
        )
    return SpendingRefused(
        ErrorCode.PENDING_APPROVAL,
        f"the price is over the approval threshold of {threshold} millicredits; the agent's "
        "owner must approve it in the portal, then retry the same acceptance",
        approval=request,
    )


async def refuse_if_frozen(connection: AsyncConnection, agent_id: str, /) -> None:
    """Raise ``SpendingRefused`` (``agent_frozen``) when the agent's spending is frozen.

    For spending that is not a contract (direct transfers): the freeze stops
    all new spending at once, whatever its path.
    """
    found = await connection.execute(
        sa.select(agent_controls).where(agent_controls.c.agent_id == agent_id).with_for_update()
    )
    row = found.mappings().first()
    if row is None:
        return
    controls = _controls_from_row(dict(row))
    if controls.frozen:
        who = "its owner" if controls.frozen_by_owner else "an operator"
        raise SpendingRefused(ErrorCode.AGENT_FROZEN, f"the agent's spending is frozen by {who}")


async def enforce_spending_controls(
    connection: AsyncConnection, ledger: SqlLedger, request: SpendingRequest, /
) -> None:
    """Raise ``SpendingRefused`` when the buyer's controls refuse the contract.

    Runs in the caller's transaction, before its escrow hold. An agent no
    human controls has no controls row and is not limited.
    """
    found = await connection.execute(
        sa.select(agent_controls)
        .where(agent_controls.c.agent_id == request.buyer_id)
        .with_for_update()
    )
    row = found.mappings().first()
    if row is None:
        return
    controls = _controls_from_row(dict(row))
    spent = 0
    if controls.daily_limit_millicredits is not None and not controls.frozen:
        since_us = start_of_day_ms(request.now_ms) * 1000
        spent = await spent_since_us(connection, ledger, request.buyer_account_id, since_us)
    status = await connection.execute(
        sa.select(approvals.c.status).where(
            approvals.c.contract_id == request.contract_id,
            approvals.c.agent_id == request.buyer_id,
        )
    )
    found_status = status.scalar_one_or_none()
    approval_status = ApprovalStatus(found_status) if found_status is not None else None
    refusal = spending_refusal(
        controls, request, spent_today_millicredits=spent, approval_status=approval_status
    )
    if refusal is not None:
        raise refusal


async def spent_since_us(
    connection: AsyncConnection, ledger: SqlLedger, account_id: str, since_us: int, /
) -> int:
    """Escrow holds made since ``since_us``: pending ones in full, posted ones as posted."""
    held: dict[str, int] = {}
    resolved: dict[str, int] = {}
    before_us: int | None = None
    for _ in range(limits.SPENDING_SCAN_PAGES_MAX):
        page = await ledger.account_transfers(
            account_id,
            limit=limits.SPENDING_SCAN_PAGE_SIZE,
            before_timestamp_us=before_us,
            connection=connection,
        )
        for record in page:
            if record.timestamp_us < since_us:
                return _spent(held, resolved)
            if record.pending_id is not None:
                posted = record.flags & TransferFlags.POST_PENDING
                resolved[record.pending_id] = record.amount if posted else 0
            elif (
                record.flags & TransferFlags.PENDING
                and record.code == TransferCode.ESCROW_LOCK
                and record.debit_account_id == account_id
            ):
                held[record.id] = record.amount
        if len(page) < limits.SPENDING_SCAN_PAGE_SIZE:
            return _spent(held, resolved)
        before_us = page[-1].timestamp_us
    raise SpendingRefused(
        ErrorCode.BUDGET_EXCEEDED, "too many transfers today to check the daily limit"
    )


def _spent(held: dict[str, int], resolved: dict[str, int]) -> int:
    return sum(resolved.get(hold_id, amount) for hold_id, amount in held.items())


async def record_refusal(engine: AsyncEngine, refusal: SpendingRefused, /) -> None:
    """Record the approval a refusal asks for (once; a decided one stays decided)."""
    request = refusal.approval
    if request is None:
        return

    async def work(connection: AsyncConnection) -> None:
        found = await connection.execute(
            sa.select(approvals.c.status).where(approvals.c.contract_id == request.contract_id)
        )
        if found.first() is not None:
            return
        await connection.execute(
            approvals.insert().values(
                contract_id=request.contract_id,
                agent_id=request.buyer_id,
                provider_id=request.provider_id,
                capability=request.capability,
                price_millicredits=request.price_millicredits,
                status=ApprovalStatus.PENDING.value,
                created_at_ms=request.now_ms,
                expires_at_ms=request.expires_at_ms,
                decided_at_ms=None,
                decided_by_user_id=None,
            )
        )

    await run_transaction(engine, work)


async def controls_by_agent(
    connection: AsyncConnection, agent_ids: list[str], /
) -> dict[str, Controls]:
    if not agent_ids:
        return {}
    found = await connection.execute(
        sa.select(agent_controls).where(agent_controls.c.agent_id.in_(agent_ids))
    )
    return {str(row["agent_id"]): _controls_from_row(dict(row)) for row in found.mappings()}


def _controls_from_row(row: dict[str, Any]) -> Controls:
    return Controls(
        agent_id=str(row["agent_id"]),
        daily_limit_millicredits=row["daily_limit_millicredits"],
        contract_limit_millicredits=row["contract_limit_millicredits"],
        approval_threshold_millicredits=row["approval_threshold_millicredits"],
        frozen_by_owner=bool(row["frozen_by_owner"]),
        frozen_by_operator=bool(row["frozen_by_operator"]),
        operator_freeze_reason=str(row["operator_freeze_reason"]),
    )


async def locked_controls(connection: AsyncConnection, agent_id: str, now_ms: int, /) -> Controls:
    """The agent's controls row, created if missing, locked for this transaction.

    Money paths that may freeze an agent take this lock before the ledger's,
    in the same order as contract opening, so they queue instead of deadlocking.
    """
    found = await connection.execute(
        sa.select(agent_controls).where(agent_controls.c.agent_id == agent_id).with_for_update()
    )
    row = found.mappings().first()
    if row is not None:
        return _controls_from_row(dict(row))
    values: dict[str, Any] = {
        "agent_id": agent_id,
        "daily_limit_millicredits": None,
        "contract_limit_millicredits": None,
        "approval_threshold_millicredits": None,
        "frozen_by_owner": False,
        "frozen_by_operator": False,
        "operator_freeze_reason": "",
        "updated_at_ms": now_ms,
    }
    await connection.execute(agent_controls.insert().values(**values))
    return _controls_from_row(values)


async def set_operator_freeze(
    connection: AsyncConnection, agent_id: str, /, *, frozen: bool, reason: str, now_ms: int
) -> None:
    await locked_controls(connection, agent_id, now_ms)
    await connection.execute(
        agent_controls.update()
        .where(agent_controls.c.agent_id == agent_id)
        .values(
            frozen_by_operator=frozen,
            operator_freeze_reason=reason if frozen else "",
            updated_at_ms=now_ms,
        )
    )
