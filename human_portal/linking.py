"""Linking agents to humans by a signed one-time code, and unlinking them.

The portal shows a signed-in human a random code (stored only as a digest,
valid for minutes, usable once). The agent signs a ``portal.link`` document
carrying the code with its own key; the link service verifies that
signature like any request (subject, clock, replay, signature, signer ==
the agent id in the subject) and only then calls :func:`link_agent`. So a
link proves two things at once: the human asked for it (the code) and the
agent's key holder agreed (the signature). An agent belongs to one human at
a time.
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from agent_client.keys import is_agent_id
from human_portal import limits
from human_portal.accounts import User
from human_portal.errors import Conflict, InvalidInput, LimitExceeded, LinkRejected, NotFound
from human_portal.portal_context import PortalContext
from human_portal.portal_tables import agent_controls, agent_links, approvals, link_codes
from human_portal.security import new_link_code, normalized_link_code, token_digest

__all__ = [
    "IssuedCode",
    "LinkedAgent",
    "checked_label",
    "issue_link_code",
    "link_agent",
    "link_of",
    "linked_agent_ids",
    "linked_agents",
    "owner_of",
    "unlink_agent",
]

_CODE_PURPOSE = "link-code"


@dataclass(frozen=True, slots=True)
class IssuedCode:
    code: str
    label: str
    expires_at_ms: int


@dataclass(frozen=True, slots=True)
class LinkedAgent:
    agent_id: str
    user_id: str
    label: str
    linked_at_ms: int


def checked_label(label: str, /) -> str:
    label = " ".join(label.split())
    if len(label) > limits.LABEL_LENGTH_MAX:
        raise InvalidInput(
            "label", f"keep the label to {limits.LABEL_LENGTH_MAX} characters or fewer"
        )
    return label


async def issue_link_code(context: PortalContext, user: User, /, *, label: str) -> IssuedCode:
    """A fresh one-time code for ``user``; at most a few may be open at once."""
    label = checked_label(label)
    code = new_link_code()
    code_compact = normalized_link_code(code)
    assert code_compact is not None
    now_ms = context.now_ms()
    expires_at_ms = now_ms + limits.LINK_CODE_LIFETIME_S * 1000

    async def work(connection: AsyncConnection) -> None:
        open_codes = await connection.execute(
            sa.select(sa.func.count()).where(
                link_codes.c.user_id == user.user_id,
                link_codes.c.used_at_ms.is_(None),
                link_codes.c.expires_at_ms > now_ms,
            )
        )
        count = int(open_codes.scalar_one())
        if count >= limits.LINK_CODES_OPEN_PER_USER_MAX:
            raise LimitExceeded(
                "too many open link codes; use one or wait until they expire",
                limit=limits.LINK_CODES_OPEN_PER_USER_MAX,
                requested=count + 1,
            )
        await connection.execute(
            link_codes.insert().values(
                code_hash=token_digest(code_compact, purpose=_CODE_PURPOSE),
                user_id=user.user_id,
                label=label,
                created_at_ms=now_ms,
                expires_at_ms=expires_at_ms,
                used_at_ms=None,
                used_by_agent_id=None,
            )
        )

    await context.write(work)
    return IssuedCode(code, label, expires_at_ms)


async def link_agent(context: PortalContext, agent_id: str, code: str, /) -> LinkedAgent:
    """Link ``agent_id`` (whose signature the caller verified) to the code's issuer."""
    assert is_agent_id(agent_id), "the link service passes only verified agent ids"
    code_compact = normalized_link_code(code)
    if code_compact is None:
        raise LinkRejected("malformed", "that is not a link code")
    code_hash = token_digest(code_compact, purpose=_CODE_PURPOSE)
    now_ms = context.now_ms()

    async def work(connection: AsyncConnection) -> LinkedAgent:
        found = await connection.execute(
            sa.select(link_codes).where(link_codes.c.code_hash == code_hash)
        )
        row = found.mappings().first()
        if row is None or row["used_at_ms"] is not None or int(row["expires_at_ms"]) <= now_ms:
            # One answer for unknown, used and expired codes: nothing to probe.
            raise LinkRejected("invalid", "the link code is unknown, used or expired")
        user_id = str(row["user_id"])
        existing = await _link_row(connection, agent_id)
        if existing is not None and existing.user_id != user_id:
            raise Conflict("this agent is linked to another account; it must be unlinked first")
        if existing is None:
            await _check_room(connection, user_id)
        # Compare-and-set: of two racing uses of one code, one wins.
        used = await connection.execute(
            link_codes.update()
            .where(link_codes.c.code_hash == code_hash, link_codes.c.used_at_ms.is_(None))
            .values(used_at_ms=now_ms, used_by_agent_id=agent_id)
        )
        if used.rowcount != 1:
            raise LinkRejected("invalid", "the link code is unknown, used or expired")
        if existing is not None:
            return existing
        link = LinkedAgent(agent_id, user_id, str(row["label"]) or agent_id[:8], now_ms)
        await connection.execute(
            agent_links.insert().values(
                agent_id=agent_id, user_id=user_id, label=link.label, linked_at_ms=now_ms
            )
        )
        await _ensure_controls(connection, agent_id, now_ms)
        return link

    return await context.write(work)


async def _check_room(connection: AsyncConnection, user_id: str) -> None:
    counted = await connection.execute(
        sa.select(sa.func.count()).where(agent_links.c.user_id == user_id)
    )
    count = int(counted.scalar_one())
    if count >= limits.LINKED_AGENTS_PER_USER_MAX:
        raise LimitExceeded(
            "this account already has the most agents it may link",
            limit=limits.LINKED_AGENTS_PER_USER_MAX,
            requested=count + 1,
        )


async def _ensure_controls(connection: AsyncConnection, agent_id: str, now_ms: int) -> None:
    found = await connection.execute(
        sa.select(agent_controls.c.agent_id).where(agent_controls.c.agent_id == agent_id)
    )
    if found.first() is None:
        await connection.execute(
            agent_controls.insert().values(
                agent_id=agent_id,
                daily_limit_millicredits=None,
                contract_limit_millicredits=None,
                approval_threshold_millicredits=None,
                frozen_by_owner=False,
                frozen_by_operator=False,
                operator_freeze_reason="",
                updated_at_ms=now_ms,
            )
        )


async def unlink_agent(context: PortalContext, user: User, agent_id: str, /) -> None:
    """End the link: the owner's limits and freeze go, an operator's freeze stays."""
    now_ms = context.now_ms()

    async def work(connection: AsyncConnection) -> None:
        deleted = await connection.execute(
            agent_links.delete().where(
                agent_links.c.agent_id == agent_id, agent_links.c.user_id == user.user_id
            )
        )
        if deleted.rowcount != 1:
            raise NotFound("linked agent")
        await connection.execute(
            agent_controls.update()
            .where(agent_controls.c.agent_id == agent_id)
            .values(
                daily_limit_millicredits=None,
                contract_limit_millicredits=None,
                approval_threshold_millicredits=None,
                frozen_by_owner=False,
                updated_at_ms=now_ms,
            )
        )
        # Nobody is left to decide them.
        await connection.execute(
            approvals.update()
            .where(approvals.c.agent_id == agent_id, approvals.c.status == "pending")
            .values(status="rejected", decided_at_ms=now_ms, decided_by_user_id=user.user_id)
        )

    await context.write(work)


async def linked_agents(connection: AsyncConnection, user_id: str, /) -> list[LinkedAgent]:
    found = await connection.execute(
        sa.select(agent_links)
        .where(agent_links.c.user_id == user_id)
        .order_by(agent_links.c.linked_at_ms, agent_links.c.agent_id)
    )
    return [_link_from_row(dict(row)) for row in found.mappings()]


async def linked_agent_ids(connection: AsyncConnection, user_id: str, /) -> list[str]:
    return [link.agent_id for link in await linked_agents(connection, user_id)]


async def owner_of(connection: AsyncConnection, user: User, agent_id: str, /) -> LinkedAgent:
    """The link of ``agent_id`` to ``user``, or ``NotFound`` (also for others' agents)."""
    link = await _link_row(connection, agent_id)
    if link is None or link.user_id != user.user_id:
        raise NotFound("linked agent")
    return link


async def link_of(connection: AsyncConnection, agent_id: str, /) -> LinkedAgent | None:
    """The agent's link to its human, if it has one."""
    return await _link_row(connection, agent_id)


async def _link_row(connection: AsyncConnection, agent_id: str) -> LinkedAgent | None:
    found = await connection.execute(
        sa.select(agent_links).where(agent_links.c.agent_id == agent_id)
    )
    row = found.mappings().first()
    return _link_from_row(dict(row)) if row is not None else None


def _link_from_row(row: dict[str, object]) -> LinkedAgent:
    return LinkedAgent(
        agent_id=str(row["agent_id"]),
        user_id=str(row["user_id"]),
        label=str(row["label"]),
        linked_at_ms=int(str(row["linked_at_ms"])),
    )
