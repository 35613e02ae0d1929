"""Database fixtures for the whole suite: real SQLite files and real PostgreSQL.

``database_url`` is parametrised over ``sqlite`` (a fresh file in the test's
``tmp_path``) and ``postgres`` (a fresh, uniquely named database on the
server in ``AGENTX_TEST_POSTGRES_URL``, dropped afterwards; skipped with that
reason when the variable is not set). Both are migrated to every head.

A package whose tests need its own tables overrides
``database_extra_version_locations`` in its conftest to add its Alembic
version folder; ``database_engine`` and ``ledger`` build on the URL.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from wallet import SqlLedger, open_database, upgrade_schema
from wallet.database import async_database_url

POSTGRES_URL_VARIABLE = "AGENTX_TEST_POSTGRES_URL"


@pytest.fixture
def database_extra_version_locations() -> Sequence[str | Path]:
    """Alembic version folders to migrate besides the wallet's; override to add yours."""
    return ()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def database_url(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    database_extra_version_locations: Sequence[str | Path],
) -> AsyncIterator[str]:
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'ledger.sqlite3'}"
        await upgrade_schema(url, extra_version_locations=database_extra_version_locations)
        yield url
        return
    admin_url = os.environ.get(POSTGRES_URL_VARIABLE)
    if not admin_url:
        pytest.skip(f"{POSTGRES_URL_VARIABLE} not set")
    async with _fresh_postgres_database(admin_url) as url:
        await upgrade_schema(url, extra_version_locations=database_extra_version_locations)
        yield url


@contextlib.asynccontextmanager
async def _fresh_postgres_database(admin_url: str) -> AsyncIterator[str]:
    """A uniquely named database created through the admin URL, dropped on exit."""
    admin_url = async_database_url(admin_url)
    name = f"agentx_test_{uuid.uuid4().hex[:16]}"
    await _run_admin_statement(admin_url, f'CREATE DATABASE "{name}"')
    try:
        yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        # FORCE: a test that failed midway may have left connections open.
        await _run_admin_statement(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def _run_admin_statement(admin_url: str, statement: str) -> None:
    # CREATE and DROP DATABASE cannot run inside a transaction.
    engine = create_async_engine(admin_url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    try:
        async with engine.connect() as connection:
            await connection.execute(text(statement))
    finally:
        await engine.dispose()


@pytest.fixture
async def database_engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = open_database(database_url)
    try:
        yield engine
    finally:
        await engine.dispose()


@pytest.fixture
def ledger(database_engine: AsyncEngine) -> SqlLedger:
    return SqlLedger(database_engine)
