"""The exchange's SQL for the fee table (rows an operator set; defaults otherwise)."""

from __future__ import annotations

from collections.abc import Mapping

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from exchange.adapters.exchange_tables import fees
from wallet.prepared_statements import PreparedStatement

__all__ = ["fee_rows", "write_fee_rows"]


# Every worker reads the table every second: prepared.
_select_fee_rows = PreparedStatement(
    lambda _dialect: sa.select(fees.c.name, fees.c.rate_bps, fees.c.updated_at_ms), ()
)


async def fee_rows(connection: AsyncConnection, /) -> tuple[dict[str, int], int]:
    """The rates set, by name, and when the table last changed (0: never)."""
    rows = await _select_fee_rows.rows(connection)
    return {str(name): int(rate) for name, rate, _ in rows}, max(
        (int(at) for _, _, at in rows), default=0
    )


async def write_fee_rows(
    connection: AsyncConnection,
    changes: Mapping[str, int | None],
    /,
    *,
    now_ms: int,
    updated_by: str,
) -> None:
    """Set (or, for None, remove) each named rate."""
    if not changes:
        return
    await connection.execute(fees.delete().where(fees.c.name.in_(sorted(changes))))
    rows = [
        {"name": name, "rate_bps": rate, "updated_at_ms": now_ms, "updated_by": updated_by}
        for name, rate in sorted(changes.items())
        if rate is not None
    ]
    if rows:
        await connection.execute(fees.insert(), rows)
