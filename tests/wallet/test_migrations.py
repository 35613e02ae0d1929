"""The Alembic migrations build the schema ``wallet.ledger_tables`` describes, on both databases.

A fresh database is migrated by the fixture; these tests check the tables and
the version row, that upgrading again changes nothing, that the migrated
schema matches the SQLAlchemy tables (Alembic's autogenerate comparison),
that another package's version folder with its own branch label is migrated
by the same call, and that failures surface as the wallet's errors.
"""

from __future__ import annotations

import asyncio
import textwrap
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from wallet import LedgerUnavailable, MigrationFailed, open_database, upgrade_schema
from wallet.ledger_tables import metadata
from wallet.migrations import MIGRATIONS_PATH, VERSIONS_PATH, alembic_config

LEDGER_TABLES = {
    "ledger_accounts",
    "ledger_transfers",
    "ledger_pending_transfers",
    "ledger_failed_transfers",
}


async def versions(engine: AsyncEngine) -> set[str]:
    async with engine.connect() as connection:
        rows = await connection.execute(text("SELECT version_num FROM alembic_version"))
        return {row[0] for row in rows}


async def table_names(engine: AsyncEngine) -> set[str]:
    async with engine.connect() as connection:
        return set(await connection.run_sync(lambda sync: inspect(sync).get_table_names()))


async def test_a_fresh_database_gets_every_ledger_table_and_the_wallet_version(
    database_engine: AsyncEngine,
) -> None:
    assert await table_names(database_engine) >= LEDGER_TABLES
    assert await versions(database_engine) == {"wallet_0001"}


async def test_upgrading_an_up_to_date_database_again_changes_nothing(
    database_url: str, database_engine: AsyncEngine
) -> None:
    await upgrade_schema(database_url)
    await upgrade_schema(database_url)
    assert await versions(database_engine) == {"wallet_0001"}
    assert await table_names(database_engine) >= LEDGER_TABLES


async def test_the_migrated_schema_matches_the_tables_the_adapter_queries(
    database_engine: AsyncEngine,
) -> None:
    def differences(connection: Connection) -> list[object]:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return list(compare_metadata(context, metadata))

    async with database_engine.connect() as connection:
        assert await connection.run_sync(differences) == []


def write_extra_revision(folder: Path) -> None:
    folder.mkdir()
    (folder / "0001_extra.py").write_text(
        textwrap.dedent(
            '''
            """Another package's tables."""
            import sqlalchemy as sa
            from alembic import op

            revision = "extra_0001"
            down_revision = None
            branch_labels = ("extra",)
            depends_on = None


            def upgrade() -> None:
                op.create_table("extra_things", sa.Column("id", sa.Text, primary_key=True))


            def downgrade() -> None:
                op.drop_table("extra_things")
            '''
        )
    )


async def test_another_packages_version_folder_is_migrated_by_the_same_call(
    database_url: str, database_engine: AsyncEngine, tmp_path: Path
) -> None:
    extra = tmp_path / "extra_versions"
    write_extra_revision(extra)
    await upgrade_schema(database_url, extra_version_locations=[extra])
    assert await versions(database_engine) == {"wallet_0001", "extra_0001"}
    assert {"extra_things", *LEDGER_TABLES} <= await table_names(database_engine)
    await upgrade_schema(database_url, extra_version_locations=[str(extra)])
    assert await versions(database_engine) == {"wallet_0001", "extra_0001"}


async def test_a_database_from_a_newer_release_raises_migration_failed(
    database_url: str, database_engine: AsyncEngine
) -> None:
    """Rolling back a deploy must not run old migrations over a newer schema."""
    async with database_engine.begin() as connection:
        await connection.execute(text("UPDATE alembic_version SET version_num = 'wallet_0099'"))
    with pytest.raises(MigrationFailed) as raised:
        await upgrade_schema(database_url)
    assert "wallet_0099" in raised.value.reason


async def test_an_unreachable_database_raises_ledger_unavailable() -> None:
    with pytest.raises(LedgerUnavailable):
        await upgrade_schema("postgresql://postgres@127.0.0.1:1/nothing")


def test_the_configuration_comes_from_the_package_not_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    config = alembic_config("sqlite:///x.db", extra_version_locations=["relative/versions"])
    assert config.get_main_option("script_location") == str(MIGRATIONS_PATH)
    assert config.get_version_locations_list() == [
        str(VERSIONS_PATH),
        str(tmp_path / "relative" / "versions"),
    ]
    assert (MIGRATIONS_PATH / "env.py").is_file()
    assert (MIGRATIONS_PATH / "script.py.mako").is_file()
    assert (VERSIONS_PATH / "0001_ledger.py").is_file()


async def test_a_migrated_sqlite_file_can_be_opened_by_a_new_engine(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    await upgrade_schema(url)
    engine = open_database(url)
    try:
        assert await table_names(engine) >= LEDGER_TABLES
    finally:
        await engine.dispose()


async def test_the_wallet_branch_downgrades_to_nothing_and_upgrades_again(
    database_url: str, database_engine: AsyncEngine
) -> None:
    config = alembic_config(database_url)
    await asyncio.to_thread(command.downgrade, config, "wallet@base")
    assert not LEDGER_TABLES & await table_names(database_engine)
    assert await versions(database_engine) == set()
    await upgrade_schema(database_url)
    assert await table_names(database_engine) >= LEDGER_TABLES
