"""Operators' actions: freeze and unfreeze agents, resolve disputes, with an audit trail.

Resolving a dispute is the exchange's business: the portal signs an
``operator.resolve`` request with the operator key it was given and sends
it over NATS, exactly as ``Agent.resolve`` does, so the exchange stays the
only one that settles escrow.
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from agent_client.keys import is_agent_id
from human_portal.accounts import User
from human_portal.budgets import set_operator_freeze
from human_portal.errors import InvalidInput, PermissionDenied
from human_portal.portal_context import PortalContext
from human_portal.portal_tables import agent_controls, agent_links, operator_audit, topups, users

__all__ = [
    "AuditEntry",
    "FrozenAgent",
    "Receivable",
    "audit_log",
    "freeze_agent",
    "frozen_agents",
    "receivables",
    "require_operator",
    "unfreeze_agent",
]

AUDIT_ENTRIES_MAX = 100
REASON_LENGTH_MAX = 500


@dataclass(frozen=True, slots=True)
class FrozenAgent:
    agent_id: str
    by_owner: bool
    by_operator: bool
    reason: str
    owner_email: str | None


@dataclass(frozen=True, slots=True)
class Receivable:
    topup_id: str
    agent_id: str
    receivable_millicredits: int
    reversed_cents: int


@dataclass(frozen=True, slots=True)
class AuditEntry:
    actor_user_id: str
    action: str
    subject_id: str
    detail: str
    at_ms: int


def require_operator(user: User, /) -> None:
    if not user.is_operator:
        raise PermissionDenied("this page is for operators")


async def freeze_agent(context: PortalContext, operator: User, agent_id: str, reason: str) -> None:
    await _set_freeze(context, operator, agent_id, frozen=True, reason=reason)


async def unfreeze_agent(context: PortalContext, operator: User, agent_id: str) -> None:
    await _set_freeze(context, operator, agent_id, frozen=False, reason="")


async def _set_freeze(
    context: PortalContext, operator: User, agent_id: str, *, frozen: bool, reason: str
) -> None:
    require_operator(operator)
    if not is_agent_id(agent_id):
        raise InvalidInput("agent_id", "enter an agent id: U followed by 55 letters and digits")
    reason = " ".join(reason.split())[:REASON_LENGTH_MAX]
    if frozen and not reason:
        raise InvalidInput("reason", "say why the agent is frozen")
    now_ms = context.now_ms()

    async def work(connection: AsyncConnection) -> None:
        await set_operator_freeze(connection, agent_id, frozen=frozen, reason=reason, now_ms=now_ms)
        await connection.execute(
            operator_audit.insert().values(
                actor_user_id=operator.user_id,
                action="freeze" if frozen else "unfreeze",
                subject_id=agent_id,
                detail=reason,
                at_ms=now_ms,
            )
        )

    await context.write(work)


async def frozen_agents(connection: AsyncConnection, /) -> list[FrozenAgent]:
    found = await connection.execute(
        sa.select(
            agent_controls.c.agent_id,
            agent_controls.c.frozen_by_owner,
            agent_controls.c.frozen_by_operator,
            agent_controls.c.operator_freeze_reason,
            users.c.email,
        )
        .outerjoin(agent_links, agent_links.c.agent_id == agent_controls.c.agent_id)
        .outerjoin(users, users.c.user_id == agent_links.c.user_id)
        .where(sa.or_(agent_controls.c.frozen_by_owner, agent_controls.c.frozen_by_operator))
        .order_by(agent_controls.c.updated_at_ms.desc())
    )
    return [FrozenAgent(row[0], bool(row[1]), bool(row[2]), str(row[3]), row[4]) for row in found]


async def receivables(connection: AsyncConnection, /) -> list[Receivable]:
    found = await connection.execute(
        sa.select(
            topups.c.topup_id,
            topups.c.agent_id,
            topups.c.receivable_millicredits,
            topups.c.reversed_cents,
        )
        .where(topups.c.receivable_millicredits > 0)
        .order_by(topups.c.created_at_ms.desc())
    )
    return [Receivable(str(r[0]), str(r[1]), int(r[2]), int(r[3])) for r in found]


async def audit_log(connection: AsyncConnection, /) -> list[AuditEntry]:
    found = await connection.execute(
        sa.select(operator_audit)
        .order_by(operator_audit.c.audit_id.desc())
        .limit(AUDIT_ENTRIES_MAX)
    )
    return [
        AuditEntry(
            str(row["actor_user_id"]),
            str(row["action"]),
            str(row["subject_id"]),
            str(row["detail"]),
            int(row["at_ms"]),
        )
        for row in found.mappings()
    ]
