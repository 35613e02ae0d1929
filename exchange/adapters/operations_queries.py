"""What operators ask the database: is it answering, and how many notices wait.

Read-only and cheap: the metrics loop and ``agentx status`` ask them often.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from exchange.adapters.exchange_tables import outbox

__all__ = ["database_answers", "outbox_backlog"]


async def database_answers(engine: AsyncEngine, /) -> None:
    """Run ``SELECT 1``; raises the driver's error when the database does not answer."""
    async with engine.connect() as connection:
        await connection.execute(sa.text("SELECT 1"))


async def outbox_backlog(connection: AsyncConnection, /) -> int:
    """Notices committed to the outbox and not yet acknowledged by their recipients (a
    connected agent acknowledges within about a second; an absent one's wait for it)."""
    count = await connection.scalar(sa.select(sa.func.count()).select_from(outbox))
    return int(count or 0)
