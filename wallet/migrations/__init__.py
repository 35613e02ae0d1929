"""Schema migrations (Alembic), for the wallet and for packages beside it.

The wallet's revisions live in ``wallet/migrations/versions`` under the branch
label ``wallet``. Another package (the exchange) keeps its own version folder
with its own branch label and revision ids prefixed with its name, and
migrates everything with one call::

    await upgrade_schema(url, extra_version_locations=[exchange_versions_path])

No ``alembic.ini`` is needed: the configuration is built here, and the paths
come from the installed package, not the current directory.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.util import CommandError
from sqlalchemy import MetaData
from sqlalchemy.exc import SQLAlchemyError

from wallet.database import async_database_url, translate_error
from wallet.errors import MigrationFailed

__all__ = ["MIGRATIONS_PATH", "VERSIONS_PATH", "alembic_config", "upgrade_schema"]

MIGRATIONS_PATH = Path(__file__).resolve().parent
VERSIONS_PATH = MIGRATIONS_PATH / "versions"


def alembic_config(
    url: str,
    /,
    *,
    extra_version_locations: Sequence[str | os.PathLike[str]] = (),
    extra_metadata: Sequence[MetaData] = (),
) -> Config:
    """An Alembic ``Config`` for ``url`` over the wallet's and the extra version folders.

    Useful for other Alembic commands too (``command.revision`` with
    ``head="exchange@head"``, ``command.current``); ``extra_metadata`` lets
    autogenerate see the other packages' tables.
    """
    config = Config()
    config.set_main_option("script_location", _escaped(MIGRATIONS_PATH))
    locations = [VERSIONS_PATH, *(Path(location).resolve() for location in extra_version_locations)]
    # "path_separator" since Alembic 1.16; the older name for 1.13 to 1.15.
    config.set_main_option("path_separator", "os")
    config.set_main_option("version_path_separator", "os")
    config.set_main_option("version_locations", os.pathsep.join(_escaped(p) for p in locations))
    # Passed as attributes, not options: a URL may hold a '%' that the ini
    # parser would try to interpolate.
    config.attributes["database_url"] = async_database_url(url)
    config.attributes["extra_metadata"] = tuple(extra_metadata)
    return config


def _escaped(path: Path) -> str:
    return str(path).replace("%", "%%")


async def upgrade_schema(
    url: str, /, *, extra_version_locations: Sequence[str | os.PathLike[str]] = ()
) -> None:
    """Run ``alembic upgrade heads``: every branch to its newest revision.

    A coroutine: Alembic is blocking, so it runs in a worker thread with its
    own event loop. Upgrading an up-to-date database does nothing.
    """
    config = alembic_config(url, extra_version_locations=extra_version_locations)
    await asyncio.to_thread(_upgrade_blocking, config)


def _upgrade_blocking(config: Config) -> None:
    try:
        command.upgrade(config, "heads")
    except CommandError as exc:
        raise MigrationFailed(str(exc)) from exc
    except (SQLAlchemyError, OSError) as exc:
        raise translate_error(exc) from exc
