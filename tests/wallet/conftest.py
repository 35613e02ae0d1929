"""Fixtures shared by the wallet's tests.

``fresh_database`` hands out fresh migrated databases cheaply (copies of one
migrated template), for property tests that need a new database per example.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from tests.fixtures_database import POSTGRES_URL_VARIABLE
from tests.wallet.ledger_helpers import FreshDatabase
from wallet import upgrade_schema
from wallet.database import async_database_url


async def _admin(admin_url: str, statement: str) -> None:
    engine = create_async_engine(admin_url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    try:
        async with engine.connect() as connection:
            await connection.execute(text(statement))
    finally:
        await engine.dispose()


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
async def fresh_database(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[FreshDatabase]:
    """Fresh migrated databases, cheaply: copies of one migrated template."""
    if request.param == "sqlite":
        folder = tmp_path_factory.mktemp("differential")
        template = folder / "template.sqlite3"
        await upgrade_schema(f"sqlite:///{template}")

        @asynccontextmanager
        async def fresh_sqlite() -> AsyncIterator[str]:
            path = folder / f"{uuid.uuid4().hex}.sqlite3"
            shutil.copyfile(template, path)
            yield f"sqlite:///{path}"

        yield fresh_sqlite
        return
    configured = os.environ.get(POSTGRES_URL_VARIABLE)
    if not configured:
        pytest.skip(f"{POSTGRES_URL_VARIABLE} not set")
    admin_url = async_database_url(configured)
    template_name = f"agentx_template_{uuid.uuid4().hex[:12]}"

    def url_of(name: str) -> str:
        return make_url(admin_url).set(database=name).render_as_string(hide_password=False)

    await _admin(admin_url, f'CREATE DATABASE "{template_name}"')
    await upgrade_schema(url_of(template_name))

    @asynccontextmanager
    async def fresh_postgres() -> AsyncIterator[str]:
        name = f"agentx_test_{uuid.uuid4().hex[:16]}"
        await _admin(admin_url, f'CREATE DATABASE "{name}" TEMPLATE "{template_name}"')
        try:
            yield url_of(name)
        finally:
            await _admin(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    try:
        yield fresh_postgres
    finally:
        await _admin(admin_url, f'DROP DATABASE IF EXISTS "{template_name}" WITH (FORCE)')
