"""Spending controls at the opening of contracts, through a port the bootstrap fills.

The humans' controls are stored by the portal (it owns the tables and the
pages that set them); the exchange enforces them, because an agent spends
through the exchange. :class:`SpendingControls` is what the exchange needs
of the store; ``exchange.bootstrap`` fills it with the portal's
implementation, so the exchange never imports the portal.

A group of openings is judged in its own transaction, before its escrow
holds, with the controls rows locked (PostgreSQL ``FOR UPDATE``; SQLite
serialises writers already): two contracts opening at once cannot both fit
under one limit. The group asks for at most one opening per controlled
buyer (the others wait for the next group), so each is judged as if it
were alone.

"Spent today" counts every escrow hold the buyer made since midnight UTC
that is still pending (in full) or was posted (by its posted amount);
voided or expired holds count nothing. It is read from the ledger, so it
agrees with the money whatever the contract tables hold.

A contract above the approval threshold is refused with
``pending_approval``, and the approval is asked for in the same
transaction; the human decides in the portal and the agent retries the same
acceptance (the contract id derives from the quote, so the approval covers
exactly that quote).

Every other refusal (frozen, over the per-contract or the daily limit) is
handed to the store in the same transaction (``record_refusals``), which
commits with the refused answer, so the portal can tell the human. A
refusal waiting for approval is not: the approval asked for is its notice;
nor is a rejected one: the human decided it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncConnection

from exchange.domain.spending_rules import (
    ApprovalStatus,
    Controls,
    RefusalCause,
    SpendingRefusal,
    SpendingRequest,
    approval_expires_at_ms,
    spending_refusal,
    start_of_day_ms,
)
from exchange.errors import ErrorCode
from exchange.limits import SPENDING_SCAN_PAGE_SIZE, SPENDING_SCAN_PAGES_MAX
from exchange.use_cases.exchange_accounts import agent_account_id
from wallet import SqlLedger, TransferCode, TransferFlags

__all__ = [
    "NoSpendingControls",
    "SpendingControls",
    "purchase_refusal",
    "purchase_request",
    "spending_refusals",
    "spent_since_us",
]


class SpendingControls(Protocol):
    """The store of the humans' controls, as the exchange uses it (in its transaction)."""

    async def locked_controls(
        self, connection: AsyncConnection, agent_ids: Sequence[str], /
    ) -> Mapping[str, Controls]:
        """The controls of those agents that have any, locked for this transaction."""
        ...

    async def approval_statuses(
        self, connection: AsyncConnection, requests: Sequence[SpendingRequest], /
    ) -> Mapping[str, ApprovalStatus]:
        """The decided or pending approvals of these contracts, by contract id."""
        ...

    async def ask_approvals(
        self, connection: AsyncConnection, requests: Sequence[SpendingRequest], /
    ) -> None:
        """Ask the humans to approve these contracts (once; a decided one stays decided)."""
        ...

    async def record_refusals(
        self,
        connection: AsyncConnection,
        refused: Sequence[tuple[SpendingRequest, SpendingRefusal]],
        /,
    ) -> None:
        """Keep these refusals for the humans to see: once per purchase and code,
        however often the agent retries (the transaction may also run twice)."""
        ...


class NoSpendingControls:
    """No human controls any agent: an exchange run without a portal's tables."""

    async def locked_controls(
        self, connection: AsyncConnection, agent_ids: Sequence[str], /
    ) -> Mapping[str, Controls]:
        return {}

    async def approval_statuses(
        self, connection: AsyncConnection, requests: Sequence[SpendingRequest], /
    ) -> Mapping[str, ApprovalStatus]:
        return {}

    async def ask_approvals(
        self, connection: AsyncConnection, requests: Sequence[SpendingRequest], /
    ) -> None:
        assert not requests, "nobody is controlled, so nothing needs an approval"

    async def record_refusals(
        self,
        connection: AsyncConnection,
        refused: Sequence[tuple[SpendingRequest, SpendingRefusal]],
        /,
    ) -> None:
        assert not refused, "nobody is controlled, so the controls refuse nothing"


def purchase_request(
    purchase_id: str,
    /,
    *,
    buyer_id: str,
    provider_id: str,
    capability: str,
    price_millicredits: int,
    now_ms: int,
    offer_expires_at_ms: int,
    task: str = "",
) -> SpendingRequest:
    """A purchase (a contract's price, a metered session's ceiling) as the controls
    judge it; an approval it asks for lasts as long as the offer accepted."""
    return SpendingRequest(
        contract_id=purchase_id,
        buyer_id=buyer_id,
        buyer_account_id=agent_account_id(buyer_id),
        provider_id=provider_id,
        capability=capability,
        price_millicredits=price_millicredits,
        now_ms=now_ms,
        expires_at_ms=approval_expires_at_ms(now_ms, offer_expires_at_ms),
        task=task,
    )


async def spending_refusals(
    controls: Mapping[str, Controls],
    requests: Sequence[SpendingRequest],
    /,
    *,
    store: SpendingControls,
    ledger: SqlLedger,
    connection: AsyncConnection,
) -> list[SpendingRefusal | None]:
    """Each request's refusal (or None), for buyers ``controls`` holds, one request each.

    The approvals the refusals ask for, and the refusals the humans are told
    of, are written in ``connection``'s transaction, so they commit with the
    group's answer.
    """
    assert len({request.buyer_id for request in requests}) == len(requests)
    assert all(request.buyer_id in controls for request in requests)
    statuses = await store.approval_statuses(connection, requests)
    refusals: list[SpendingRefusal | None] = []
    for request in requests:
        buyer_controls = controls[request.buyer_id]
        spent = 0
        if buyer_controls.daily_limit_millicredits is not None and not buyer_controls.frozen:
            since_us = start_of_day_ms(request.now_ms) * 1000
            spent = await spent_since_us(connection, ledger, request.buyer_account_id, since_us)
            if spent < 0:
                refusals.append(_too_many_transfers())
                continue
        refusals.append(
            spending_refusal(
                buyer_controls,
                request,
                spent_today_millicredits=spent,
                approval_status=statuses.get(request.contract_id),
            )
        )
    asked = [
        refusal.approval
        for refusal in refusals
        if refusal is not None and refusal.approval is not None
    ]
    if asked:
        await store.ask_approvals(connection, asked)
    told = [
        (request, refusal)
        for request, refusal in zip(requests, refusals, strict=True)
        if refusal is not None and refusal.code not in _NOT_TOLD
    ]
    if told:
        await store.record_refusals(connection, told)
    return refusals


# A pending approval is told as the approval itself; a rejection was the human's own.
_NOT_TOLD = frozenset({ErrorCode.PENDING_APPROVAL, ErrorCode.APPROVAL_REJECTED})


async def purchase_refusal(
    request: SpendingRequest,
    /,
    *,
    store: SpendingControls,
    ledger: SqlLedger,
    connection: AsyncConnection,
) -> SpendingRefusal | None:
    """The controls' word on one purchase outside a group (a metered ceiling, a
    subscription's period, a digital good): None when allowed, or when nobody
    controls the buyer. An approval it asks for is written in ``connection``'s
    transaction, with the controls row locked."""
    controls = await store.locked_controls(connection, [request.buyer_id])
    if request.buyer_id not in controls:
        return None
    (refusal,) = await spending_refusals(
        controls, [request], store=store, ledger=ledger, connection=connection
    )
    return refusal


def _too_many_transfers() -> SpendingRefusal:
    return SpendingRefusal(
        ErrorCode.BUDGET_EXCEEDED,
        "too many transfers today to check the daily limit",
        RefusalCause.DAILY_LIMIT_UNCHECKABLE,
    )


async def spent_since_us(
    connection: AsyncConnection, ledger: SqlLedger, account_id: str, since_us: int, /
) -> int:
    """Escrow holds made since ``since_us``: pending ones in full, posted ones as posted.

    -1 when the day holds more transfers than the scan reads (the caller refuses).
    """
    held: dict[str, int] = {}
    resolved: dict[str, int] = {}
    before_us: int | None = None
    for _ in range(SPENDING_SCAN_PAGES_MAX):
        page = await ledger.account_transfers(
            account_id,
            limit=SPENDING_SCAN_PAGE_SIZE,
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
        if len(page) < SPENDING_SCAN_PAGE_SIZE:
            return _spent(held, resolved)
        before_us = page[-1].timestamp_us
    return -1


def _spent(held: dict[str, int], resolved: dict[str, int]) -> int:
    return sum(resolved.get(hold_id, amount) for hold_id, amount in held.items())
