"""Upgrading an outbox that kept published notices (``exchange_0002``), on both databases.

A database from before this revision holds every notice ever published,
marked with ``published_at_ms``. The upgrade deletes those (the notice
stream keeps them) and keeps the unpublished ones for the relay; the column
goes. The database before is made from a migrated one: the outbox put back
as ``exchange_0001`` made it, and the version row of ``exchange_0002`` gone.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from exchange import migrate_database
from exchange.adapters.exchange_tables import outbox
from wallet import open_database

# The outbox as revision exchange_0001 made it.
BEFORE = (
    "ALTER TABLE exchange_outbox ADD COLUMN published_at_ms BIGINT",
    "DROP INDEX exchange_outbox_by_created",
    "CREATE INDEX exchange_outbox_unpublished ON exchange_outbox (published_at_ms, created_at_ms)",
    # Alembic keeps only heads, and the other branches' revisions depend on
    # exchange_0001: before exchange_0002 the exchange branch had no row.
    "DELETE FROM alembic_version WHERE version_num = 'exchange_0002'",
)


async def _outbox_columns(engine: AsyncEngine) -> set[str]:
    async with engine.connect() as connection:
        return await connection.run_sync(
            lambda sync: {column["name"] for column in sa.inspect(sync).get_columns(outbox.name)}
        )


async def test_the_upgrade_drops_published_notices_and_keeps_the_others(database_url):
    await migrate_database(database_url)
    engine = open_database(database_url)
    try:
        async with engine.begin() as connection:
            for statement in BEFORE:
                await connection.execute(sa.text(statement))
        assert "published_at_ms" in await _outbox_columns(engine)
        async with engine.begin() as connection:
            await connection.execute(
                sa.text(
                    "INSERT INTO exchange_outbox "
                    "(notice_id, subject, payload, created_at_ms, published_at_ms) "
                    "VALUES (:id, 'agentx.v2.agent.a.notify', '{}', :at, :published)"
                ),
                [
                    {"id": "published-1", "at": 1, "published": 5},
                    {"id": "unpublished", "at": 2, "published": None},
                    {"id": "published-2", "at": 3, "published": 6},
                ],
            )

        await migrate_database(database_url)

        assert "published_at_ms" not in await _outbox_columns(engine)
        async with engine.connect() as connection:
            left = list(await connection.execute(sa.select(outbox)))
        assert [(row.notice_id, row.created_at_ms) for row in left] == [("unpublished", 2)]
    finally:
        await engine.dispose()
