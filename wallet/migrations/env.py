"""The Alembic environment shared by the wallet and every package that adds a
version folder (each with its own branch label).

Alembic runs this file; ``wallet.migrations.upgrade_schema`` is the way in.
It opens the database with ``wallet.database.open_database`` (so SQLite gets
``BEGIN IMMEDIATE`` and PostgreSQL the async driver) and migrates on a
private event loop: Alembic's API is blocking, so ``upgrade_schema`` calls it
from a worker thread.
"""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy import text
from sqlalchemy.engine import Connection

from wallet.database import open_database
from wallet.errors import MigrationFailed
from wallet.ledger_tables import metadata

# Concurrent upgrades (several workers starting at once) queue on this
# PostgreSQL advisory lock instead of racing to create the same tables.
# SQLite needs none: its migration transaction begins IMMEDIATE.
_MIGRATION_LOCK_KEY = 4_172_398_001

config = context.config


def _run_migrations(connection: Connection) -> None:
    target_metadata = [metadata, *config.attributes.get("extra_metadata", ())]
    context.configure(connection=connection, target_metadata=target_metadata)
    with context.begin_transaction():
        if connection.dialect.name == "postgresql":
            connection.execute(
                text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK_KEY}
            )
        context.run_migrations()


async def _run_online(url: str) -> None:
    engine = open_database(url)
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_run_migrations)
    finally:
        await engine.dispose()


if context.is_offline_mode():
    raise MigrationFailed("offline (--sql) migrations are not supported; run upgrade_schema")
asyncio.run(_run_online(config.attributes["database_url"]))
