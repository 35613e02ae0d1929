"""Upgrading the outbox from older revisions, on both databases.

* ``exchange_0002``: a database from before it holds every notice ever
  published, marked with ``published_at_ms``; the upgrade deletes those
  (the old notice stream kept them) and keeps the unpublished ones.
* ``exchange_0003``: the outbox keeps each notice until its recipient
  acknowledges it; the upgrade reads each notice's recipient off its subject
  and makes every notice still there due at once, so the relay sends it.

The database before is made from a migrated one: the newer revisions'
changes undone by hand, and their version rows gone or put back.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from exchange import migrate_database
from exchange.adapters.exchange_tables import outbox
from wallet import open_database

# The outbox as revision exchange_0002 made it.
UNDO_0003 = (
    "DROP INDEX exchange_outbox_by_recipient",
    "DROP INDEX exchange_outbox_by_due",
    "ALTER TABLE exchange_outbox DROP COLUMN due_at_ms",
    "ALTER TABLE exchange_outbox DROP COLUMN published_at_ms",
    "ALTER TABLE exchange_outbox DROP COLUMN recipient",
)
# ... and as exchange_0001 made it.
UNDO_0002 = (
    "ALTER TABLE exchange_outbox ADD COLUMN published_at_ms BIGINT",
    "DROP INDEX exchange_outbox_by_created",
    "CREATE INDEX exchange_outbox_unpublished ON exchange_outbox (published_at_ms, created_at_ms)",
)
# Alembic keeps only heads, and the other branches' revisions depend on
# exchange_0001: before exchange_0002 the exchange branch had no row.
BACK_TO_0002 = ("UPDATE alembic_version SET version_num = 'exchange_0002' "
                "WHERE version_num = 'exchange_0003'",)  # fmt: skip
BACK_TO_0001 = ("DELETE FROM alembic_version WHERE version_num = 'exchange_0003'",)
ALICE = "UALICE"
BOB = "UBOB"


async def _outbox_columns(engine: AsyncEngine) -> set[str]:
    async with engine.connect() as connection:
        return await connection.run_sync(
            lambda sync: {column["name"] for column in sa.inspect(sync).get_columns(outbox.name)}
        )


async def _run(engine: AsyncEngine, statements: tuple[str, ...]) -> None:
    async with engine.begin() as connection:
        for statement in statements:
            await connection.execute(sa.text(statement))


async def _outbox_rows(engine: AsyncEngine) -> list[tuple[str, str, int, int]]:
    async with engine.connect() as connection:
        rows = await connection.execute(
            sa.select(
                outbox.c.notice_id, outbox.c.recipient, outbox.c.created_at_ms, outbox.c.due_at_ms
            ).order_by(outbox.c.created_at_ms)
        )
        return [tuple(row) for row in rows]  # type: ignore[misc]


async def test_the_upgrade_to_0002_drops_published_notices_and_keeps_the_others(database_url):
    await migrate_database(database_url)
    engine = open_database(database_url)
    try:
        await _run(engine, UNDO_0003 + UNDO_0002 + BACK_TO_0001)
        assert {"published_at_ms", "recipient"} & await _outbox_columns(engine) == {
            "published_at_ms"
        }
        async with engine.begin() as connection:
            await connection.execute(
                sa.text(
                    "INSERT INTO exchange_outbox "
                    "(notice_id, subject, payload, created_at_ms, published_at_ms) "
                    "VALUES (:id, :subject, '{}', :at, :published)"
                ),
                [
                    {"id": "published-1", "subject": f"agentx.v2.agent.{ALICE}.notify",
                     "at": 1, "published": 5},
                    {"id": "unpublished", "subject": f"agentx.v2.agent.{ALICE}.notify",
                     "at": 2, "published": None},
                    {"id": "published-2", "subject": f"agentx.v2.agent.{BOB}.notify",
                     "at": 3, "published": 6},
                ],
            )  # fmt: skip

        await migrate_database(database_url)

        assert await _outbox_rows(engine) == [("unpublished", ALICE, 2, 0)]
    finally:
        await engine.dispose()


async def test_the_upgrade_to_0003_names_each_recipient_and_makes_every_notice_due(database_url):
    await migrate_database(database_url)
    engine = open_database(database_url)
    try:
        await _run(engine, UNDO_0003 + BACK_TO_0002)
        assert "recipient" not in await _outbox_columns(engine)
        async with engine.begin() as connection:
            await connection.execute(
                sa.text(
                    "INSERT INTO exchange_outbox (notice_id, subject, payload, created_at_ms) "
                    "VALUES (:id, :subject, '{}', :at)"
                ),
                [
                    {"id": "to-alice", "subject": f"agentx.v2.agent.{ALICE}.notify", "at": 7},
                    {"id": "to-bob", "subject": f"agentx.v2.agent.{BOB}.notify", "at": 8},
                ],
            )

        await migrate_database(database_url)

        assert await _outbox_rows(engine) == [("to-alice", ALICE, 7, 0), ("to-bob", BOB, 8, 0)]
    finally:
        await engine.dispose()
