"""The humans' spending controls, stored here and enforced by the exchange.

The rules are the exchange's (:mod:`exchange.domain.spending_rules`), and so
is the moment they are applied (:mod:`exchange.use_cases.spending`, when a
contract opens). This module stores them: :class:`PortalSpendingControls`
is the store the exchange's port asks for, and the functions below are the
portal's own uses of the same rows (money paths that lock them, operator
freezes, the pages that read them).

Refused purchases (frozen, over a limit) are kept in ``portal_spending_refusals``
for the notices: inserted once per (agent, purchase, code), whoever retries,
and pruned for that agent on every insert: older than
``REFUSALS_KEPT_DAYS`` or beyond the newest ``REFUSALS_PER_AGENT_MAX``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from exchange.domain.spending_rules import (
    ApprovalStatus,
    Controls,
    SpendingRefusal,
    SpendingRequest,
)
from human_portal import limits
from human_portal.portal_tables import agent_controls, approvals, spending_refusals
from wallet.prepared_statements import PreparedStatement, among, id_list

_MILLISECONDS_PER_DAY = 24 * 3600 * 1000

__all__ = [
    "PortalSpendingControls",
    "controls_by_agent",
    "locked_controls",
    "set_operator_freeze",
]


_CONTROLS_COLUMNS = tuple(column.name for column in agent_controls.columns)
assert _CONTROLS_COLUMNS[0] == "agent_id"
# Run for every contract opening (the exchange's hot path): prepared once.
_select_locked_controls = PreparedStatement(
    lambda dialect: (
        sa.select(agent_controls)
        .where(among(dialect, agent_controls.c.agent_id, "ids"))
        .order_by(agent_controls.c.agent_id)  # one lock order: no deadlocks between groups
        .with_for_update()
    ),
    ("ids",),
)


class PortalSpendingControls:
    """The portal's tables as the exchange's ``SpendingControls`` port."""

    async def locked_controls(
        self, connection: AsyncConnection, agent_ids: Sequence[str], /
    ) -> Mapping[str, Controls]:
        if not agent_ids:
            return {}
        ids = id_list(connection, sorted(set(agent_ids)))
        found = await _select_locked_controls.rows(connection, (ids,))
        return {
            str(row[0]): _controls_from_row(dict(zip(_CONTROLS_COLUMNS, row, strict=True)))
            for row in found
        }

    async def approval_statuses(
        self, connection: AsyncConnection, requests: Sequence[SpendingRequest], /
    ) -> Mapping[str, ApprovalStatus]:
        if not requests:
            return {}
        buyers = {request.contract_id: request.buyer_id for request in requests}
        found = await connection.execute(
            sa.select(approvals.c.contract_id, approvals.c.agent_id, approvals.c.status).where(
                approvals.c.contract_id.in_(sorted(buyers))
            )
        )
        return {
            str(row["contract_id"]): ApprovalStatus(row["status"])
            for row in found.mappings()
            if buyers.get(str(row["contract_id"])) == row["agent_id"]
        }

    async def ask_approvals(
        self, connection: AsyncConnection, requests: Sequence[SpendingRequest], /
    ) -> None:
        if not requests:
            return
        found = await connection.execute(
            sa.select(approvals.c.contract_id).where(
                approvals.c.contract_id.in_([request.contract_id for request in requests])
            )
        )
        asked_already = {str(contract_id) for contract_id in found.scalars()}
        new = [request for request in requests if request.contract_id not in asked_already]
        if new:
            await connection.execute(approvals.insert(), [_approval_values(r) for r in new])

    async def record_refusals(
        self,
        connection: AsyncConnection,
        refused: Sequence[tuple[SpendingRequest, SpendingRefusal]],
        /,
    ) -> None:
        if not refused:
            return
        rows = [_refusal_values(request, refusal) for request, refusal in refused]
        await connection.execute(_insert_new_only(connection), rows)
        for agent_id in sorted({str(row["agent_id"]) for row in rows}):
            now_ms = max(int(row["at_ms"]) for row in rows if row["agent_id"] == agent_id)
            await _prune_refusals(connection, agent_id, now_ms)


def _insert_new_only(connection: AsyncConnection) -> Any:
    """An insert that leaves a refusal already kept as it is (a retry, a rerun group)."""
    keys = ["agent_id", "purchase_id", "code"]
    if connection.dialect.name == "postgresql":
        return postgresql.insert(spending_refusals).on_conflict_do_nothing(index_elements=keys)
    return sqlite.insert(spending_refusals).on_conflict_do_nothing(index_elements=keys)


def _refusal_values(request: SpendingRequest, refusal: SpendingRefusal) -> dict[str, Any]:
    return {
        "agent_id": request.buyer_id,
        "purchase_id": request.contract_id,
        "code": refusal.code.value,
        "capability": request.capability,
        "provider_id": request.provider_id,
        "price_millicredits": request.price_millicredits,
        "cause": refusal.cause.value,
        "reason": refusal.message[: limits.REFUSAL_REASON_LENGTH_MAX],
        "at_ms": request.now_ms,
    }


async def _prune_refusals(connection: AsyncConnection, agent_id: str, now_ms: int, /) -> None:
    """Drop the agent's refusals past their age, and all but the newest few."""
    oldest_kept_ms = now_ms - limits.REFUSALS_KEPT_DAYS * _MILLISECONDS_PER_DAY
    of_agent = spending_refusals.c.agent_id == agent_id
    # The newest row beyond the bound, if any: it and every older one go.
    found = await connection.execute(
        sa.select(spending_refusals.c.refusal_id)
        .where(of_agent)
        .order_by(spending_refusals.c.refusal_id.desc())
        .offset(limits.REFUSALS_PER_AGENT_MAX)
        .limit(1)
    )
    beyond = found.scalar()
    too_old = spending_refusals.c.at_ms < oldest_kept_ms
    condition = (
        too_old if beyond is None else sa.or_(too_old, spending_refusals.c.refusal_id <= beyond)
    )
    await connection.execute(spending_refusals.delete().where(of_agent, condition))


def _approval_values(request: SpendingRequest) -> dict[str, Any]:
    return {
        "contract_id": request.contract_id,
        "agent_id": request.buyer_id,
        "provider_id": request.provider_id,
        "capability": request.capability,
        "price_millicredits": request.price_millicredits,
        "status": ApprovalStatus.PENDING.value,
        "created_at_ms": request.now_ms,
        "expires_at_ms": request.expires_at_ms,
        "decided_at_ms": None,
        "decided_by_user_id": None,
        "task": request.task[: limits.APPROVAL_TASK_LENGTH_MAX],
    }


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
