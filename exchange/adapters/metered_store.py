"""The exchange's SQL for metered sessions and their claims.

Every function takes the connection of an already-begun transaction; the
use case decides what is atomic (a claim, its ledger capture and its
evidence row commit together).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from agent_client.protocol import MeteredState
from exchange.adapters.exchange_tables import metered_claims, metered_sessions
from exchange.domain.metered_rules import MeteredRow
from exchange.errors import ErrorCode, ExchangeError
from wallet.prepared_statements import PreparedStatement

__all__ = [
    "add_claim",
    "claim_rows",
    "due_session_ids",
    "get_session",
    "insert_session",
    "metered_totals",
    "update_session",
]


async def get_session(
    connection: AsyncConnection, contract_id: str, /, *, for_update: bool = False
) -> MeteredRow | None:
    statement = sa.select(metered_sessions).where(metered_sessions.c.contract_id == contract_id)
    if for_update:
        statement = statement.with_for_update()
    row = (await connection.execute(statement)).mappings().one_or_none()
    if row is None:
        return None
    values = dict(row)
    values["state"] = MeteredState(values["state"])
    return MeteredRow(**values)


async def insert_session(connection: AsyncConnection, session: MeteredRow, /) -> None:
    """Insert a new session; an offer accepted twice is refused by the primary key."""
    try:
        await connection.execute(metered_sessions.insert().values(**_values(session)))
    except IntegrityError as exc:
        raise ExchangeError(
            ErrorCode.QUOTE_ALREADY_ACCEPTED,
            "this metered offer was already accepted",
            contract_id=session.contract_id,
        ) from exc


async def update_session(
    connection: AsyncConnection, before: MeteredRow, after: MeteredRow, /
) -> None:
    """Write ``after`` over ``before``, compare-and-set on what a racing step changes."""
    result = await connection.execute(
        metered_sessions.update()
        .where(
            metered_sessions.c.contract_id == before.contract_id,
            metered_sessions.c.state == before.state.value,
            metered_sessions.c.claimed_units == before.claimed_units,
        )
        .values(**_values(after))
    )
    if result.rowcount != 1:
        raise ExchangeError(
            ErrorCode.INVALID_STATE,
            "the session changed under this step; retry",
            contract_id=before.contract_id,
        )


async def add_claim(connection: AsyncConnection, values: Mapping[str, Any], /) -> None:
    await connection.execute(metered_claims.insert().values(**values))


async def claim_rows(
    connection: AsyncConnection,
    contract_id: str,
    /,
    *,
    limit: int,
    before_units: int | None,
) -> tuple[list[dict[str, Any]], bool]:
    """A session's claims, newest first, one page; and whether more follow."""
    statement = sa.select(metered_claims).where(metered_claims.c.contract_id == contract_id)
    if before_units is not None:
        statement = statement.where(metered_claims.c.units < before_units)
    statement = statement.order_by(metered_claims.c.units.desc()).limit(limit + 1)
    rows = [dict(row) for row in (await connection.execute(statement)).mappings()]
    return rows[:limit], len(rows) > limit


# Run every second on every worker, mostly finding nothing: prepared.
_select_due_sessions = PreparedStatement(
    lambda _dialect: (
        sa.select(metered_sessions.c.contract_id)
        .where(
            sa.or_(
                sa.and_(
                    metered_sessions.c.state == MeteredState.OPEN.value,
                    metered_sessions.c.expires_at_ms <= sa.bindparam("now_ms"),
                ),
                sa.and_(
                    metered_sessions.c.state == MeteredState.CLOSING.value,
                    metered_sessions.c.closes_at_ms <= sa.bindparam("now_ms"),
                ),
            )
        )
        .limit(sa.bindparam("limit"))
    ),
    ("now_ms", "limit"),
)


async def due_session_ids(connection: AsyncConnection, /, *, now_ms: int, limit: int) -> list[str]:
    """Sessions whose expiry or claim window has passed."""
    rows = await _select_due_sessions.rows(connection, (now_ms, limit))
    return [str(contract_id) for (contract_id,) in rows]


async def metered_totals(connection: AsyncConnection, /) -> dict[str, int]:
    """For the invariants: what open sessions still hold, and sessions that do not add up."""
    held = await connection.execute(
        sa.select(
            sa.func.coalesce(
                sa.func.sum(
                    metered_sessions.c.ceiling_millicredits
                    - metered_sessions.c.captured_millicredits
                ),
                0,
            )
        ).where(metered_sessions.c.state != MeteredState.CLOSED.value)
    )
    claims = await connection.execute(
        sa.select(
            sa.func.count(),
        )
        .select_from(metered_sessions)
        .where(
            metered_sessions.c.captured_millicredits
            != sa.select(sa.func.coalesce(sa.func.sum(metered_claims.c.captured_millicredits), 0))
            .where(metered_claims.c.contract_id == metered_sessions.c.contract_id)
            .scalar_subquery()
        )
    )
    return {"held": int(held.scalar_one()), "claims_not_adding_up": int(claims.scalar_one())}


def _values(session: MeteredRow) -> dict[str, Any]:
    values = {field: getattr(session, field) for field in MeteredRow.__slots__}
    values["state"] = session.state.value
    return values
