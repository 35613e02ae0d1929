"""The portal's Alembic revisions (branch label ``portal``).

``exchange.bootstrap.worker.migrate_database`` passes ``VERSIONS_PATH`` to
``wallet.upgrade_schema`` with the exchange's own folder, so one call brings
the wallet's, the exchange's and the portal's tables up to date.
"""

from pathlib import Path

__all__ = ["VERSIONS_PATH"]

VERSIONS_PATH = Path(__file__).resolve().parent / "versions"
