"""The owner's side of the spending controls: limits, the freeze switch, approvals.

The exchange enforces them (``exchange.use_cases.spending``); this module is how a
human sets them and decides the contracts that wait for approval. The limits
and the freeze are set apart (a budget form, a freeze button): saving limits
keeps the freeze as it is, and freezing keeps the limits.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from exchange.domain.spending_rules import ApprovalStatus, Controls
from human_portal import limits
from human_portal.accounts import User
from human_portal.budgets import locked_controls
from human_portal.errors import Conflict, FormErrors, InvalidInput, NotFound
from human_portal.linking import owner_of
from human_portal.portal_context import PortalContext
from human_portal.portal_tables import agent_controls, agent_links, approvals

__all__ = [
    "Approval",
    "approvals_for_user",
    "checked_limit",
    "decide_approval",
    "set_controls",
    "set_owner_freeze",
]


@dataclass(frozen=True, slots=True)
class Approval:
    contract_id: str
    agent_id: str
    provider_id: str
    capability: str
    price_millicredits: int
    status: ApprovalStatus
    created_at_ms: int
    expires_at_ms: int
    # The agent's name for its human, and what it asked to have done.
    agent_label: str = ""
    task: str = ""

    def is_expired(self, now_ms: int, /) -> bool:
        return self.status is ApprovalStatus.PENDING and self.expires_at_ms <= now_ms


def checked_limit(value: int | None, /, *, field: str) -> int | None:
    if value is not None and not 1 <= value <= limits.BUDGET_MILLICREDITS_MAX:
        raise InvalidInput(
            field, "enter more than 0 and at most a billion credits, or leave it empty"
        )
    return value


def checked_limits(limit_by_field: dict[str, int | None], /) -> dict[str, int | None]:
    """Every limit checked, each mistake kept: a person fixes them all in one go."""
    problems: dict[str, str] = {}
    for field, value in limit_by_field.items():
        try:
            checked_limit(value, field=field)
        except InvalidInput as error:
            problems[field] = error.problem
    if problems:
        raise FormErrors(problems)
    return limit_by_field


async def set_controls(
    context: PortalContext,
    user: User,
    agent_id: str,
    /,
    *,
    daily_limit_millicredits: int | None,
    contract_limit_millicredits: int | None,
    approval_threshold_millicredits: int | None,
    frozen: bool | None,
) -> Controls:
    """Replace the owner's limits of one linked agent, and its freeze unless ``frozen``
    is None (kept as it is); they apply to the next contract."""
    checked = checked_limits(
        {
            "daily_limit": daily_limit_millicredits,
            "contract_limit": contract_limit_millicredits,
            "approval_threshold": approval_threshold_millicredits,
        }
    )
    now_ms = context.now_ms()

    async def work(connection: AsyncConnection) -> Controls:
        await owner_of(connection, user, agent_id)
        current = await locked_controls(connection, agent_id, now_ms)
        frozen_by_owner = current.frozen_by_owner if frozen is None else frozen
        await connection.execute(
            agent_controls.update()
            .where(agent_controls.c.agent_id == agent_id)
            .values(
                updated_at_ms=now_ms,
                daily_limit_millicredits=checked["daily_limit"],
                contract_limit_millicredits=checked["contract_limit"],
                approval_threshold_millicredits=checked["approval_threshold"],
                frozen_by_owner=frozen_by_owner,
            )
        )
        return Controls(
            agent_id=agent_id,
            daily_limit_millicredits=checked["daily_limit"],
            contract_limit_millicredits=checked["contract_limit"],
            approval_threshold_millicredits=checked["approval_threshold"],
            frozen_by_owner=frozen_by_owner,
            frozen_by_operator=current.frozen_by_operator,
            operator_freeze_reason=current.operator_freeze_reason,
        )

    return await context.write(work)


async def set_owner_freeze(
    context: PortalContext, user: User, agent_id: str, /, *, frozen: bool
) -> Controls:
    """Freeze or unfreeze one linked agent's new spending; its limits stay as they are."""
    now_ms = context.now_ms()

    async def work(connection: AsyncConnection) -> Controls:
        await owner_of(connection, user, agent_id)
        current = await locked_controls(connection, agent_id, now_ms)
        await connection.execute(
            agent_controls.update()
            .where(agent_controls.c.agent_id == agent_id)
            .values(updated_at_ms=now_ms, frozen_by_owner=frozen)
        )
        return dataclasses.replace(current, frozen_by_owner=frozen)

    return await context.write(work)


async def decide_approval(
    context: PortalContext, user: User, contract_id: str, /, *, approve: bool
) -> Approval:
    """Approve or reject a waiting contract of one of the user's agents, once."""
    now_ms = context.now_ms()

    async def work(connection: AsyncConnection) -> Approval:
        found = await connection.execute(
            _approvals_with_labels().where(
                approvals.c.contract_id == contract_id, agent_links.c.user_id == user.user_id
            )
        )
        row = found.mappings().first()
        if row is None:
            raise NotFound("approval")
        approval = _approval_from_row(dict(row))
        if approval.status is not ApprovalStatus.PENDING:
            raise Conflict(f"this contract was already {approval.status.value}")
        if approval.is_expired(now_ms):
            raise Conflict("this request expired with its quote")
        status = ApprovalStatus.APPROVED if approve else ApprovalStatus.REJECTED
        await owner_of(connection, user, approval.agent_id)
        updated = await connection.execute(
            approvals.update()
            .where(
                approvals.c.contract_id == contract_id,
                approvals.c.status == ApprovalStatus.PENDING.value,
            )
            .values(status=status.value, decided_at_ms=now_ms, decided_by_user_id=user.user_id)
        )
        if updated.rowcount != 1:
            raise Conflict("this contract was decided meanwhile")
        return dataclasses.replace(approval, status=status)

    return await context.write(work)


async def approvals_for_user(
    connection: AsyncConnection, user_id: str, /, *, limit: int
) -> list[Approval]:
    """The user's agents' approval requests, newest first."""
    found = await connection.execute(
        _approvals_with_labels()
        .where(agent_links.c.user_id == user_id)
        .order_by(approvals.c.created_at_ms.desc())
        .limit(limit)
    )
    return [_approval_from_row(dict(row)) for row in found.mappings()]


def _approvals_with_labels() -> sa.Select[Any]:
    """Approvals of linked agents, each with the label its human gave the agent."""
    return sa.select(approvals, agent_links.c.label).join(
        agent_links, agent_links.c.agent_id == approvals.c.agent_id
    )


def _approval_from_row(row: dict[str, Any]) -> Approval:
    return Approval(
        contract_id=str(row["contract_id"]),
        agent_id=str(row["agent_id"]),
        provider_id=str(row["provider_id"]),
        capability=str(row["capability"]),
        price_millicredits=int(row["price_millicredits"]),
        status=ApprovalStatus(row["status"]),
        created_at_ms=int(row["created_at_ms"]),
        expires_at_ms=int(row["expires_at_ms"]),
        agent_label=str(row["label"]),
        task=str(row["task"]),
    )
